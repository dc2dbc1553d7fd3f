"""Attacks that held when issue 28's review tried them, kept as tests so they keep holding.

Covered elsewhere and listed in docs/security.md: approve after reject and executing twice
(tests/integration/test_plans.py), symlinks out of the repo (tests/unit/test_catalog.py), Jinja in extra-var
values (tests/integration/test_plans.py), tags that smuggle options (tests/security/test_extra_vars.py), HTTP
beyond loopback without a token (tests/security/test_tokens.py, test_principals.py), the console's Gradio API
behind the login (tests/console/test_console_browser.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chiffon.orchestrator.planner import plan_request
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError, InvalidInput, PlanStateError
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all, make_repo


@pytest.fixture
def fresh_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "iac")


async def test_two_racing_approvals_record_one(rt: Runtime, fresh_repo: Path) -> None:
    svc = AnsibleService.for_runtime(rt, fresh_repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml")
    outcomes = await asyncio.gather(
        *(plans.decide(rt, plan.id, "approved", approver=f"tester{i}", channel="cli") for i in range(2)),
        return_exceptions=True)
    assert sum(isinstance(o, plans.Plan) for o in outcomes) == 1
    assert sum(isinstance(o, PlanStateError) for o in outcomes) == 1
    assert await rt.store.pool.fetchval("SELECT count(*) FROM approvals WHERE plan_id=$1", plan.id) == 1


async def test_two_racing_executes_run_the_plan_once(rt: Runtime, fresh_repo: Path) -> None:
    svc = AnsibleService.for_runtime(rt, fresh_repo)
    catalog = await svc.catalog()
    plan = await plans.create_plan(rt, catalog, "echo-message.yml")
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    outcomes = await asyncio.gather(*(execution.execute(rt, catalog, plan.id) for _ in range(2)),
                                    return_exceptions=True)
    assert sum(isinstance(o, execution.RunResult) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, PlanStateError) for o in outcomes) == 1, outcomes
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 1


async def test_a_20_mb_request_is_refused_before_anything_is_stored(rt: Runtime, fresh_repo: Path) -> None:
    svc = AnsibleService.for_runtime(rt, fresh_repo)
    before = await rt.store.pool.fetchval("SELECT count(*) FROM plans")
    with pytest.raises(InvalidInput, match="request"):
        await plan_request(svc, "deploy redis " * 1_600_000)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM plans") == before


@pytest.mark.parametrize("limit", ["ai;id", "ai$(id)", "ai`id`", "ai\nid", "--become", "@/etc/passwd", "ai|id"])
async def test_a_limit_that_smuggles_a_command_or_an_option_is_refused(rt: Runtime, fresh_repo: Path,
                                                                      limit: str) -> None:
    svc = AnsibleService.for_runtime(rt, fresh_repo)
    before = await rt.store.pool.fetchval("SELECT count(*) FROM plans")
    with pytest.raises(ChiffonError):
        await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", limit=limit)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM plans") == before


def billion_laughs(depth: int = 9) -> str:
    """A playbook whose vars are the YAML alias bomb: 9 levels of 9 references (9**9 "lol" once expanded)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return ("- name: Laugh\n  hosts: all\n  vars:\n" + "".join(f"    {line}\n" for line in lines)
            + "  tasks:\n    - name: Show it\n      ansible.builtin.debug:\n        var: a9\n")


def test_a_billion_laughs_playbook_is_read_without_expanding_it(fresh_repo: Path) -> None:
    (fresh_repo / "laugh.yml").write_text(billion_laughs())
    git_commit_all(fresh_repo)
    catalog = Catalog.load(fresh_repo, "inventories/local.ini")
    assert "a9" in catalog.get("laugh.yml").variables
    assert "deploy-redis.yml" in catalog.playbooks


def test_ten_thousand_yaml_files_do_not_hide_the_playbooks(fresh_repo: Path) -> None:
    noise = fresh_repo / "group_vars" / "noise"
    noise.mkdir(parents=True)
    for i in range(10_000):
        (noise / f"v{i}.yml").write_text(f"noise_{i}: {i}\n")
    git_commit_all(fresh_repo)
    catalog = Catalog.load(fresh_repo, "inventories/local.ini")
    assert {"deploy-redis.yml", "deploy-uptime-kuma.yml", "echo-message.yml"} <= set(catalog.playbooks)
