"""The playbook catalog in ``documentation`` and matching by meaning (real MiniLM, real ChromaDB)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from chiffon.orchestrator.planner import plan_request
from chiffon.orchestrator.playbook_memory import PlaybookIndex, SyncReport
from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible import matching
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.service import AnsibleService
from chiffon.servers.memory.embedders import LocalEmbedder, OllamaEmbedder
from chiffon.servers.memory.service import MemoryService
from chiffon.servers.memory.vectors import Identity, VectorMemory, open_client
from chiffon.shared.config import MemorySettings
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all
from tests.fixtures.playbooks import INVENTORY, labelled_requests, write_labelled_repo


@pytest.fixture
def labelled_repo(tmp_path: Path) -> Path:
    return write_labelled_repo(tmp_path / "labelled")


@pytest.fixture
def index(tmp_path: Path) -> PlaybookIndex:
    return PlaybookIndex(VectorMemory(open_client(tmp_path / "home", None), LocalEmbedder(), MemorySettings()))


async def test_cards_are_synced_incrementally_and_recallable(index: PlaybookIndex, labelled_repo: Path) -> None:
    first, _ = await index.sync(Catalog.load(labelled_repo, INVENTORY))
    again, _ = await index.sync(Catalog.load(labelled_repo, INVENTORY))
    pihole = labelled_repo / "deploy-pihole.yml"
    pihole.write_text(pihole.read_text().replace("blocks ads and trackers", "filters adverts and trackers"))
    (labelled_repo / "deploy-redis.yml").unlink()
    git_commit_all(labelled_repo)
    edited, vectors = await index.sync(Catalog.load(labelled_repo, INVENTORY))
    hits = await index.vectors.recall("which playbook blocks adverts for the whole network?", Identity(), k=1,
                                      collections=["documentation"], filters={"kind": "playbook"})
    assert first == SyncReport(added=16, updated=0, deleted=0, unchanged=0)
    assert again == SyncReport(added=0, updated=0, deleted=0, unchanged=16)
    assert edited == SyncReport(added=0, updated=1, deleted=1, unchanged=14)
    assert set(vectors) == set(Catalog.load(labelled_repo, INVENTORY).playbooks)
    assert hits[0].metadata["path"] == "deploy-pihole.yml" and hits[0].scope == "shared"


async def test_meaning_ranks_paraphrases_that_words_miss(index: PlaybookIndex, labelled_repo: Path) -> None:
    catalog = Catalog.load(labelled_repo, INVENTORY)
    words_right = blended_right = refused = 0
    labelled = labelled_requests()
    for text, want in labelled:
        words = matching.rank(catalog, text)
        blended = matching.blend(words, await index.similarities(catalog, text))
        if want is None:
            refused += blended[0].score < matching.MIN_SCORE
            continue
        words_right += words[0].playbook.name == want and words[0].score >= matching.MIN_SCORE
        blended_right += blended[0].playbook.name == want and blended[0].score >= matching.MIN_SCORE
    named = sum(1 for _, want in labelled if want)
    assert blended_right / named >= 0.9, f"{blended_right}/{named} right by words + meaning"
    assert blended_right > words_right
    assert refused == len(labelled) - named  # meaning must not make off-topic requests plannable


async def test_plan_request_through_the_orchestrator_matches_by_meaning(rt: Runtime, labelled_repo: Path,
                                                                        tmp_path: Path) -> None:
    memory = MemoryService(rt, VectorMemory(open_client(tmp_path / "home", None), LocalEmbedder(), MemorySettings()))
    svc = AnsibleService(rt, labelled_repo)
    async with Client(create_orchestrator(svc, memory=memory)) as c:
        plan = (await c.call_tool("plan_request", {"request": "a network-wide ad blocker"})).structured_content
    assert matching.rank(Catalog.load(labelled_repo, INVENTORY), "a network-wide ad blocker")[0].playbook.name \
        != "deploy-pihole.yml"  # words alone pick another playbook
    assert plan["playbook"] == "deploy-pihole.yml" and plan["status"] == "pending_approval"
    assert plan["match"]["planner"]["scoring"] == "words+meaning" and "meaning similarity" in plan["match"]["reason"]


async def test_memory_down_plans_by_words_with_a_note(rt: Runtime, labelled_repo: Path, tmp_path: Path) -> None:
    dead = OllamaEmbedder("http://127.0.0.1:9", "nomic-embed-text")  # discard port: nothing listens
    index = PlaybookIndex(VectorMemory(open_client(tmp_path / "home", None), dead, MemorySettings()))
    plan = await plan_request(AnsibleService(rt, labelled_repo), "upgrade the apt packages",
                              playbooks=index)
    assert plan.playbook == "update-packages.yml"
    assert plan.match["planner"]["scoring"] == "words" and "127.0.0.1:9" in plan.match["planner"]["memory_error"]
