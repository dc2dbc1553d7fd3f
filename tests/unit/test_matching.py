
import pytest

from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.matching import MIN_SCORE, rank, terms, validate_request
from chiffon.shared.errors import InvalidInput
from tests.conftest import EXAMPLE, KUMA_REQUEST


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(EXAMPLE, "inventories/local.ini")


def test_kuma_request_ranks_the_kuma_playbook_first_with_a_reason(catalog: Catalog) -> None:
    best, runner_up = rank(catalog, KUMA_REQUEST)[:2]
    assert best.playbook.name == "deploy-uptime-kuma.yml"
    assert best.score >= MIN_SCORE and best.score > runner_up.score
    assert "'kuma'" in best.reason and "'portal'" in best.reason


@pytest.mark.parametrize(
    ("request_text", "playbook"),
    [
        ("install redis on the cache host", "deploy-redis.yml"),
        ("free up disk space", "cleanup-disk.yml"),
        ("take a dump of the database", "backup-postgres.yml"),
        ("set up monitoring", "deploy-uptime-kuma.yml"),
    ],
)
def test_synonyms_reach_the_right_playbook(catalog: Catalog, request_text: str, playbook: str) -> None:
    assert rank(catalog, request_text)[0].playbook.name == playbook


def test_unrelated_request_scores_below_the_threshold(catalog: Catalog) -> None:
    assert rank(catalog, "bake a chocolate cake")[0].score < MIN_SCORE


def test_scores_are_between_zero_and_one(catalog: Catalog) -> None:
    assert all(0.0 <= m.score <= 1.0 for m in rank(catalog, KUMA_REQUEST + " redis disk backup"))


def test_terms_drop_stopwords_and_plurals_but_keep_redis() -> None:
    assert terms("Add the portals to Redis") == ["add", "portal", "redis"]


def test_empty_and_huge_requests_are_refused() -> None:
    with pytest.raises(InvalidInput, match="request"):
        validate_request("   ")
    with pytest.raises(InvalidInput, match="limit is 2000"):
        validate_request("x" * 2001)
