"""A request asked on the console's Plans page (orchestrator/console/asking.py), through the real planner, check
mode and store: candidates to pick from when the request is ambiguous or matches nothing, and only a repo the
console knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.orchestrator.console import actions, asking
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all


def two_variants(root: Path) -> Path:
    """A repo that deploys Jellyfin twice (docker and k3s variants), on a local host."""
    for variant in ("docker", "k3s"):
        (root / variant).mkdir(parents=True)
        (root / variant / "jellyfin.yml").write_text(
            f"# Jellyfin media server ({variant})\n- hosts: media\n  gather_facts: false\n  tasks:\n"
            f"    - name: Start Jellyfin on {variant}\n      ansible.builtin.debug: {{msg: x}}\n")
    (root / "hosts.yml").write_text("all:\n  vars:\n    ansible_connection: local\n"
                                    "  children:\n    media:\n      hosts:\n        nas:\n")
    git_commit_all(root)
    return root


async def test_an_ambiguous_request_lists_the_candidates_and_plans_the_one_picked(rt: Runtime,
                                                                                 tmp_path: Path) -> None:
    repo = two_variants(tmp_path / "variants")
    svc = AnsibleService(rt, None)  # the console bound to another repo, or none: the request names this one
    req = asking.ConsoleRequest("Deploy Jellyfin", str(repo), allowed=[str(repo)])
    with pytest.raises(asking.NeedsChoice) as caught:
        await asking.ask(svc, req)
    labels = [label for label, _ in caught.value.choices]
    assert any(label.startswith("docker/jellyfin.yml") for label in labels)
    assert any(label.startswith("k3s/jellyfin.yml") for label in labels)
    k3s = next(value for label, value in caught.value.choices if label.startswith("k3s/"))
    plan = await asking.ask(svc, req, choice=k3s)
    assert plan.playbook == "k3s/jellyfin.yml" and plan.repo == str(repo) and plan.status == "pending_approval"
    assert plan.hosts == ["nas"] and plan.request == "Deploy Jellyfin"


async def test_a_request_that_matches_nothing_offers_the_closest(rt: Runtime, repo: Path) -> None:
    svc = AnsibleService(rt, repo)
    req = asking.ConsoleRequest("bake a chocolate cake", str(repo), allowed=[str(repo)])
    with pytest.raises(asking.NeedsChoice, match="no playbook matches") as caught:
        await asking.ask(svc, req)
    label, value = caught.value.choices[0]
    assert value.startswith(asking.DIRECT)
    plan = await asking.ask(svc, req, choice=value)
    assert plan.request == "bake a chocolate cake" and plan.status == "pending_approval"
    assert label.startswith(plan.playbook)


async def test_a_request_names_only_a_repo_the_console_knows(rt: Runtime, repo: Path, tmp_path: Path) -> None:
    svc = AnsibleService(rt, repo)
    elsewhere = two_variants(tmp_path / "not-known")
    req = asking.ConsoleRequest("Deploy Jellyfin", str(elsewhere), allowed=[str(repo)])
    with pytest.raises(InvalidInput, match="repo: pick one of the known repos"):
        await asking.ask(svc, req)


async def test_tags_typed_with_the_request_narrow_the_run(rt: Runtime, repo: Path) -> None:
    svc = AnsibleService(rt, repo)
    req = asking.ConsoleRequest("deploy redis", str(repo), tags="bogus-tag", allowed=[str(repo)])
    with pytest.raises(InvalidInput, match="tags"):
        await asking.ask(svc, req)
    assert asking.ConsoleRequest("x", None, tags=" a, b c ").tag_list() == ["a", "b", "c"]


async def test_request_changes_plans_again_in_the_plans_own_repo(rt: Runtime, repo: Path) -> None:
    first = await plans.create_plan(rt, await AnsibleService(rt, repo).catalog(), "deploy-redis.yml",
                                    request="deploy redis")
    unbound = AnsibleService(rt, None)  # a console started without --repo: the plan says which repo it is
    new = await actions.request_changes(unbound, first.id, "alice", "only on east")
    assert new.repo == str(repo) and new.supersedes == first.id and new.status == "pending_approval"
    assert (await plans.get_plan(rt, first.id)).status == "rejected"
