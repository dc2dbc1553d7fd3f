"""`chiffon plans`: the plans newest first, filtered by status, as a table or JSON; a status outside the
allow-list is refused by the command line before anything opens."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from chiffon.orchestrator.cli.plans_cmd import Status
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def chiffon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHIFFON, *args], env={**env, "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=300)


def test_the_command_lines_statuses_are_the_plan_statuses() -> None:
    assert {s.value for s in Status} == set(typing.get_args(plans.PlanStatus))


@pytest.mark.asyncio(loop_scope="session")
async def test_plans_lists_the_pending_first_and_filters_by_status(rt: Runtime, repo: Path,
                                                                   cli_env: dict[str, str]) -> None:
    svc = AnsibleService(rt, repo)
    waiting = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", request="echo for the plans list")
    refused = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", request="echo to be refused")
    await plans.decide(rt, refused.id, "rejected", approver="alice (console)", channel="console")

    pending = json.loads(chiffon(cli_env, "plans", "--pending", "--json").stdout)["plans"]
    ids = [p["id"] for p in pending]
    assert waiting.id in ids and refused.id not in ids
    assert {p["status"] for p in pending} == {"pending_approval"}
    mine = next(p for p in pending if p["id"] == waiting.id)
    assert mine["playbook"] == "echo-message.yml" and mine["request"] == "echo for the plans list"

    rejected = json.loads(chiffon(cli_env, "plans", "-s", "rejected", "--json").stdout)["plans"]
    assert refused.id in [p["id"] for p in rejected] and waiting.id not in [p["id"] for p in rejected]

    table = chiffon(cli_env, "plans", "--limit", "500")
    assert table.returncode == 0, table.stderr
    assert waiting.id in table.stdout and refused.id in table.stdout and "just now" in table.stdout


@pytest.mark.parametrize("bad", ["pending'; DROP TABLE plans; --", "all", "PENDING_APPROVAL"])
def test_a_status_outside_the_allow_list_is_refused(bad: str, tmp_path: Path) -> None:
    done = chiffon({"PATH": "/usr/bin:/bin", "CHIFFON_HOME": str(tmp_path)}, "plans", "--status", bad)
    assert done.returncode == 2
    assert "Invalid value for '--status'" in done.stderr
    assert not (tmp_path / "postgres").exists()  # refused before the store was opened
