"""Drift against real ansible-runner on localhost, PostgreSQL and the error bus: a fixture repo (tests/fixtures/
drift_repo.py) applied for real through plans, one file edited by hand, then `run_drift` and `chiffon drift`."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastmcp import Client
from prometheus_client import REGISTRY

from chiffon.orchestrator.compose import infra_service
from chiffon.orchestrator.incidents import Correlator, incidents
from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible import drift, execution, plans
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.server import create_ansible_server
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared import error_bus
from chiffon.shared.error_bus import ERRORS_STREAM
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all
from tests.fixtures.drift_repo import make_drift_repo, target

CHIFFON = str(Path(sys.executable).parent / "chiffon")
EDITED, CLEAN, NEVER, SECURE = "deploy-svc-00.yml", "deploy-svc-01.yml", "deploy-svc-02.yml", \
    "secure/deploy-secrets-store.yml"


@dataclass
class Applied:
    """A fixture repo whose svc-00 and svc-01 were applied for real, svc-02 never, and svc-00's config on ``ai``
    then edited by hand."""

    repo: Path
    token: str
    svc: AnsibleService

    async def catalog(self) -> Catalog:
        return await self.svc.catalog()


async def apply(rt: Runtime, catalog: Catalog, playbook: str) -> None:
    plan = await plans.create_plan(rt, catalog, playbook)
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(rt, catalog, plan.id)
    assert result.status == "succeeded", result


async def prepared(rt: Runtime, base: Path, targets: Path) -> Applied:
    token = secrets.token_hex(4)
    repo = make_drift_repo(base / "repo", 3, token, secure=True)
    git_commit_all(repo)
    svc = infra_service(rt, repo)  # as the composition root builds it: new drift reaches the humans
    catalog = await svc.catalog()
    for playbook in (EDITED, CLEAN):
        await apply(rt, catalog, playbook)
    conf = target(targets, "ai", token, 0)
    conf.write_text(conf.read_text().replace("log_level = info", "log_level = debug"))  # the hand change
    return Applied(repo, token, svc)


@pytest.fixture(scope="module", autouse=True)
def live_tasks(rt: Runtime):  # type: ignore[no-untyped-def]
    """The fixture's services each ask their container for its state with ``check_mode: false``, as real repos
    do: these tests opt in (``drift.live_tasks``); the default, which leaves such units unchecked, has its own."""
    rt.settings.drift.live_tasks = True
    os.environ["CHIFFON_DRIFT__LIVE_TASKS"] = "true"
    yield
    rt.settings.drift.live_tasks = False
    os.environ.pop("CHIFFON_DRIFT__LIVE_TASKS", None)


@pytest.fixture(scope="module")
async def applied(rt: Runtime, tmp_path_factory: pytest.TempPathFactory, targets: Path) -> Applied:
    return await prepared(rt, tmp_path_factory.mktemp("drift"), targets)


@pytest.fixture(scope="module")
async def report(rt: Runtime, applied: Applied) -> drift.DriftReport:
    return await drift.run_drift(rt, await applied.catalog())


def test_the_hand_change_is_found_on_its_host_unit_and_task_and_nothing_else(report: drift.DriftReport) -> None:
    assert [(d.unit, d.host) for d in report.drifted] == [(EDITED, "ai")]
    (task,) = report.drifted[0].tasks
    assert (task.task, task.module) == ("Render the svc-00 config", "ansible.builtin.template")
    assert "-log_level = debug" in task.diff and "+log_level = info" in task.diff
    assert task.summary.endswith("svc-00.conf: +1 -1 line(s)")
    # the command that reports changed (check_mode: false) is no evidence of drift
    assert not any("container" in t.task for d in [*report.drifted, *report.never_run] for t in d.tasks)
    assert [c.unit for c in report.clean] == [CLEAN] and report.exit_code == 1


def test_a_unit_never_run_is_reported_as_never_run_not_as_drift(report: drift.DriftReport) -> None:
    assert [(d.unit, d.host) for d in report.never_run] == [(NEVER, "desktop")]
    assert [t.task for t in report.never_run[0].tasks] == [
        "Create the svc-02 directory", "Render the svc-02 config", "Write the svc-02 environment file"]
    assert NEVER not in {d.unit for d in report.drifted} | {c.unit for c in report.clean}


def test_a_unit_missing_its_vault_password_lands_in_errors_while_the_others_are_checked(
        report: drift.DriftReport) -> None:
    assert [e.unit for e in report.errors] == [SECURE]
    assert "vault_identity_list" in report.errors[0].reason and "not on this machine" in report.errors[0].reason
    assert report.units == 4  # the three services were checked all the same


async def test_the_report_is_stored_and_the_gauge_follows_it(rt: Runtime, applied: Applied,
                                                              report: drift.DriftReport) -> None:
    stored = await drift.last_report(rt, applied.repo)
    assert stored is not None and stored.model_dump(exclude={"created_at"}) == report.model_dump(exclude={"created_at"})
    assert (drift_gauge("ai", EDITED) or 0) >= 1  # other repos of this session may have drifted on the same pair
    assert drift_gauge("desktop", NEVER) is None  # never run: no series


async def test_drift_plan_makes_a_pending_plan_limited_to_the_drifted_hosts(rt: Runtime, applied: Applied,
                                                                           report: drift.DriftReport) -> None:
    plan = await drift.plan_fix(rt, await applied.catalog(), EDITED)
    assert plan.status == "pending_approval" and plan.blocked_reason is None
    assert (plan.playbook, plan.host_limit, plan.hosts) == (EDITED, "ai", ["ai"])
    assert "+log_level = info" in plan.diff and report.id in (plan.request or "")


@pytest.mark.parametrize("unit", ["../../etc/passwd", "deploy-svc-00.yml --tags x", "deploy-svc-00.yml; id", "",
                                  "x" * 400])
async def test_a_bad_plan_unit_is_refused_with_a_clear_error_and_changes_nothing(
        rt: Runtime, applied: Applied, report: drift.DriftReport, unit: str) -> None:
    before = await rt.store.pool.fetchval("SELECT count(*) FROM plans")
    with pytest.raises(InvalidInput, match="unit") as refused:
        await drift.plan_fix(rt, await applied.catalog(), unit)
    assert "Nothing was planned" in str(refused.value) or "give a unit id" in str(refused.value)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM plans") == before


async def test_a_clean_unit_cannot_be_planned_as_a_drift_fix(rt: Runtime, applied: Applied,
                                                             report: drift.DriftReport) -> None:
    with pytest.raises(InvalidInput, match=f"did not drift.*it lists: {EDITED}, {NEVER}"):
        await drift.plan_fix(rt, await applied.catalog(), CLEAN)


async def drift_events(rt: Runtime, token: str) -> list[dict[str, object]]:
    return [m.data for m in await rt.bus.recent(ERRORS_STREAM, count=5000)
            if m.data["source"] == "drift" and token in str(m.data["message"])]


async def test_new_drift_opens_one_incident_and_a_second_run_does_not_open_another(
        rt: Runtime, tmp_path: Path, targets: Path) -> None:
    fresh = await prepared(rt, tmp_path, targets)
    heard: list[tuple[str, dict[str, object]]] = []

    async def notify(title: str, body: dict[str, object]) -> None:
        heard.append((title, body))

    reporter = error_bus.attach(rt.bus)
    try:
        first = await drift.run_drift(rt, await fresh.catalog(), notify=notify)
        await reporter.drain()
        await Correlator(rt).catch_up()
        second = await drift.run_drift(rt, await fresh.catalog(), notify=notify)
    finally:
        await error_bus.detach(reporter)
    await Correlator(rt).catch_up()
    assert first.new_drift == [{"host": "ai", "unit": EDITED}] and second.new_drift == []
    assert [(d.unit, d.host) for d in second.drifted] == [(EDITED, "ai")]  # still drifted, already reported
    (event,) = await drift_events(rt, str(fresh.repo))
    assert event["context"] == {"host": "ai"} and event["severity"] == "warning"
    opened = [i for i in await incidents(rt, limit=1000) if "drift" in i["sources"]
              and str(fresh.repo) in str(i["last_event"].get("message"))]
    assert len(opened) == 1 and "host:ai" in opened[0]["keys"]
    assert len(heard) == 1 and heard[0][1]["new"][0]["unit"] == EDITED  # type: ignore[index]


def drift_gauge(host: str, unit: str) -> float | None:
    return REGISTRY.get_sample_value("chiffon_drift_tasks", {"host": host, "unit": unit})


async def test_the_fix_plan_puts_the_unit_back_and_its_drift_leaves_the_gauge(rt: Runtime, tmp_path: Path,
                                                                              targets: Path) -> None:
    fresh = await prepared(rt, tmp_path, targets)
    catalog = await fresh.catalog()
    await drift.run_drift(rt, catalog)
    drifted = drift_gauge("ai", EDITED)
    assert drifted is not None and drifted >= 1
    plan = await drift.plan_fix(rt, catalog, EDITED)
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    assert (await execution.execute(rt, catalog, plan.id)).status == "succeeded"
    assert "log_level = info" in target(targets, "ai", fresh.token, 0).read_text()
    after = await drift.run_drift(rt, catalog)
    assert after.drifted == [] and after.exit_code == 2  # the vault-blocked unit is still an error
    assert (drift_gauge("ai", EDITED) or 0) == drifted - 1  # this repo's pair is gone, other repos' stay


async def test_the_drift_tool_is_annotated_like_check_and_returns_the_report(rt: Runtime, applied: Applied,
                                                                             report: drift.DriftReport) -> None:
    async with Client(create_ansible_server(applied.svc)) as client:
        tools = {t.name: t for t in await client.list_tools()}
        result = (await client.call_tool("drift", {})).structured_content
    hints = tools["drift"].annotations
    assert hints is not None and hints.read_only_hint is False and hints.destructive_hint is False
    async with Client(create_orchestrator(applied.svc, toolsets=("ansible",))) as client:
        assert "ansible_drift" in {t.name for t in await client.list_tools()}  # the orchestrator exposes it
    assert applied.svc.notify_drift is not None  # ...built by compose with new drift wired to the inbox and Apprise
    assert [(d["unit"], d["host"]) for d in result["drifted"]] == [(EDITED, "ai")]
    assert [e["unit"] for e in result["errors"]] == [SECURE] and result["new_drift"] == []


def test_chiffon_drift_json_prints_the_report_and_exits_1_on_drift(cli_env: dict[str, str], applied: Applied,
                                                                   report: drift.DriftReport) -> None:
    proc = subprocess.run([CHIFFON, "drift", "--repo", str(applied.repo), "--json"], env=cli_env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out) == {"repo", "drifted", "clean", "errors", "never_run"}
    assert [set(d) for d in out["drifted"]] == [{"unit", "playbook", "host", "tasks"}]
    assert [(d["unit"], d["host"]) for d in out["drifted"]] == [(EDITED, "ai")]
    refused = subprocess.run([CHIFFON, "drift", "--repo", str(applied.repo), "--plan", "nope.yml"], env=cli_env,
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "'nope.yml' is not a unit" in refused.stderr and refused.stdout == ""
    planned = subprocess.run([CHIFFON, "drift", "--repo", str(applied.repo), "--plan", EDITED, "--json"], env=cli_env,
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert planned.returncode == 3, planned.stderr[-3000:]  # awaits a human's approval; nothing changed
    plan = json.loads(planned.stdout)
    assert (plan["status"], plan["playbook"], plan["limit"]) == ("awaiting_approval", EDITED, "ai")


async def test_by_default_drift_runs_nothing_for_real_and_lists_such_a_unit_unchecked(
        rt: Runtime, tmp_path: Path, targets: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "inventory.ini").write_text("[ai]\nai\n[all:vars]\nansible_connection=local\n"
                                        "ansible_python_interpreter={{ ansible_playbook_python }}\n")
    (repo / "ansible.cfg").write_text("[defaults]\ninventory = inventory.ini\n")
    ran = tmp_path / "it-ran"
    (repo / "probe.yml").write_text(f"# Probe the box\n- hosts: ai\n  gather_facts: false\n  tasks:\n"
                                    f"    - name: Probe for real\n      ansible.builtin.command: touch {ran}\n"
                                    f"      check_mode: false\n")
    git_commit_all(repo)
    rt.settings.drift.live_tasks = False
    try:
        report = await drift.run_drift(rt, await AnsibleService.for_runtime(rt, repo).catalog())
    finally:
        rt.settings.drift.live_tasks = True
    assert not ran.exists()  # nobody approved a drift run: nothing ran for real
    (error,) = report.errors
    assert "runs for real even in check mode" in error.reason and "drift.live_tasks" in error.reason
