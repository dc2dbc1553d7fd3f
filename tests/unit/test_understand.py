"""Answer first: what a request asks for, read from repos in real shapes, whatever is missing on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.servers.ansible import matching, understand
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.commands import parse_invocation, read_commands
from chiffon.shared.errors import NoMatch
from tests.fixtures import repos


def answer(repo: Path, request: str, **kw: str) -> understand.Answer:
    catalog = Catalog.load(repo)
    return understand.understand(catalog, request, matching.rank(catalog, request), catalog.commands, **kw)


def test_a_project_in_a_subfolder_uses_its_own_ansible_cfg_and_inventory(tmp_path: Path) -> None:
    got = answer(repos.subfolder_project(tmp_path / "r"), "Deploy Jellyfin")
    assert got.project.dir == "ansible" and got.best.unit.playbook.name == "ansible/site.yml"
    assert (got.inventory, got.inventory_present) == ("ansible/inventory.ini", True)


def test_a_role_in_two_plays_picks_the_play_for_the_service_group_and_limits_to_it(tmp_path: Path) -> None:
    got = answer(repos.subfolder_project(tmp_path / "r"), "Redeploy the jellyfin container")
    assert got.best.unit.hosts == ("jellyfin",) and got.limit == "jellyfin"
    assert any("site.yml --limit jellyfin" in e for e in got.evidence)  # the owner's Taskfile says so
    other = next(c for c in got.candidates if c.unit.hosts == ("web",))
    assert "also applies users, ntp, caddy" in " ".join(other.evidence)


def test_the_owners_command_is_read_from_a_taskfile_with_its_cd() -> None:
    assert parse_invocation(" -i inventories/prod site.yml --tags jellyfin -l media -e x=1") == \
        {"playbook": "site.yml", "inventory": "inventories/prod", "tags": ("jellyfin",), "limit": "media"}
    assert parse_invocation(" {{.PLAYBOOK}} --limit {{.LIMIT}}")["playbook"] is None  # templated: not guessed


def test_commands_resolve_playbooks_against_the_folder_they_cd_into(tmp_path: Path) -> None:
    repo = repos.subfolder_project(tmp_path / "r")
    found = read_commands(repo, [str(repo / "Taskfile.yml")], {"ansible/site.yml"})
    assert [(c.playbook, c.limit, c.source) for c in found] == [("ansible/site.yml", "jellyfin", "Taskfile.yml:5")]


def test_a_gitignored_inventory_still_gets_an_answer_with_the_copy_to_make(tmp_path: Path) -> None:
    got = answer(repos.gitignored_inventory(tmp_path / "r"), "Deploy Immich")
    assert (got.best.unit.playbook.name, got.best.unit.tags) == ("deploy.yml", ("immich",))
    assert (got.inventory, got.inventory_present) == ("inventory", False)
    assert "copy inventory.example to inventory" in got.problems[0]


def test_tear_down_picks_the_teardown_play_tagged_for_the_service(tmp_path: Path) -> None:
    got = answer(repos.gitignored_inventory(tmp_path / "r"), "Tear down paperless")
    assert (got.best.unit.playbook.name, got.best.unit.tags, got.intent.action) == \
        ("teardown.yml", ("paperless",), "remove")


def test_a_deploy_request_never_runs_the_teardown_playbook(tmp_path: Path) -> None:
    got = answer(repos.gitignored_inventory(tmp_path / "r"), "set up paperless again")
    assert got.best.unit.playbook.name == "deploy.yml"


def test_tearing_down_a_service_with_no_teardown_play_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoMatch):
        answer(repos.subfolder_project(tmp_path / "r"), "Tear down Jellyfin")


def test_a_service_the_repo_does_not_have_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoMatch):
        answer(repos.gitignored_inventory(tmp_path / "r"), "Install Vaultwarden")


def test_the_environment_a_request_names_picks_its_inventory(tmp_path: Path) -> None:
    repo = repos.root_inventory_envs(tmp_path / "r")
    assert answer(repo, "Set up the UniFi controller on staging").inventory == "staging"
    assert answer(repo, "Deploy the UniFi controller").inventory == "production"  # the README's -i


def test_per_environment_inventory_folders_are_chosen_by_the_request(tmp_path: Path) -> None:
    repo = repos.environments(tmp_path / "e")
    assert answer(repo, "Deploy Grafana on staging").inventory == "inventories/staging"
    assert answer(repo, "Deploy Grafana").inventory == "inventories/prod/hosts.yml"


def test_a_host_the_request_names_becomes_the_limit(tmp_path: Path) -> None:
    got = answer(repos.subfolder_project(tmp_path / "r"), "Deploy Caddy on web1")
    assert got.limit == "web1" and got.limit_source == "the request names it"


def test_a_small_models_reason_that_is_not_a_sentence_about_the_request_is_dropped() -> None:
    from chiffon.orchestrator.planner import is_sentence_about

    names = ["deploy-uptime-kuma.yml", "deploy-extsvc.yml"]
    assert not is_sentence_about("deploy-uptime-kuma.yml", "Deploy the extsvc service", names)
    assert not is_sentence_about("backup-postgres.yml is a backup-postgres.yml", "Deploy the extsvc service", names)
    assert is_sentence_about("It deploys the extsvc service the request names.", "Deploy the extsvc service", names)
