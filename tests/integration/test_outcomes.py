"""A run says whether what was asked for happened: the example's Kuma and backup playbooks run for real, with
Docker down and up (a stand-in ``docker`` answering in Docker's format) and the database down and up (the
session's real PostgreSQL), and their outcome is what happened on this machine."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from chiffon.orchestrator.console import history, run_html
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime
from tests.conftest import make_repo
from tests.fixtures import docker_standin


@pytest.fixture
def svc(rt: Runtime, tmp_path: Path) -> AnsibleService:
    return AnsibleService.for_runtime(rt, make_repo(tmp_path / "repo"))


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A stand-in ``docker`` first on PATH (daemon down until the test says ``up``); what it starts is stopped."""
    folder = docker_standin.install(tmp_path / "docker-bin", daemon=False)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    yield folder
    docker_standin.stop(folder)


async def run(svc: AnsibleService, playbook: str, **kwargs) -> tuple[plans.Plan, execution.RunResult]:  # type: ignore[no-untyped-def]
    plan = await plans.create_plan(svc.rt, await svc.catalog(), playbook, **kwargs)
    await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")
    return plan, await execution.execute(svc.rt, await svc.catalog(), plan.id)


async def test_kuma_without_a_docker_engine_is_partial_and_says_it_is_not_running(
        svc: AnsibleService, docker: Path) -> None:
    plan, result = await run(svc, "deploy-uptime-kuma.yml")
    assert [c["kind"] for c in plan.expectations] == ["container", "http"]  # stated in the repo's chiffon.yml
    assert result.status == "succeeded" and result.outcome == "partial"  # Ansible exited 0: not the outcome
    assert result.outcome_reasons[0].startswith("Uptime Kuma is not running: ")
    assert "Cannot connect to the Docker daemon" in result.outcome_reasons[0]
    assert any("'Start Uptime Kuma' was skipped on east: docker_info.rc == 0" in r for r in result.outcome_reasons)
    assert {"task": "Start Uptime Kuma", "host": "east", "condition": "docker_info.rc == 0"} in result.skipped
    assert [c["ok"] for c in result.checks] == [False, False]
    stored = await execution.existing_run(svc.rt, plan.id)
    assert stored is not None and stored.outcome == "partial" and stored.outcome_reasons == result.outcome_reasons
    subject = svc.rt.audit.message(result.audit_commit).splitlines()[0]
    assert "partial" in subject and "Uptime Kuma is not running" in subject
    head = run_html.head_html(await history.follow(svc.rt, plan.id))  # the console's Runs page: the outcome on top
    assert head.index('data-state="partial"') < head.index("Uptime Kuma is not running") < head.index("Ansible")


async def test_a_plan_over_an_inventory_ansible_cannot_parse_fails_with_ansible_s_message(
        rt: Runtime, tmp_path: Path) -> None:
    from chiffon.shared.errors import RepoError

    repo = make_repo(tmp_path / "repo")
    (repo / "ansible.cfg").write_text((repo / "ansible.cfg").read_text() + "\n[inventory]\nunparsed_is_failed = True\n")
    (repo / "inventories" / "local.ini").write_text("[monitoring\neast ansible_connection=local\n")
    svc = AnsibleService.for_runtime(rt, repo)
    with pytest.raises(RepoError, match="could not be parsed"):  # read beside the check (checks._within), as before
        await plans.create_plan(rt, await svc.catalog(), "deploy-uptime-kuma.yml")


async def test_kuma_with_docker_up_is_achieved_and_verified_over_http(svc: AnsibleService, docker: Path) -> None:
    (docker / "daemon-up").touch()
    _, result = await run(svc, "deploy-uptime-kuma.yml")
    assert result.outcome == "achieved", result.outcome_reasons
    assert [c["ok"] for c in result.checks] == [True, True]
    assert "answered HTTP 200" in result.checks[1]["evidence"]
    assert result.outcome_reasons[0].startswith("verified: Uptime Kuma is running")


async def test_a_second_plan_knows_the_last_run_was_partial_and_what_is_down_now(
        svc: AnsibleService, docker: Path) -> None:
    await run(svc, "deploy-uptime-kuma.yml")
    again = await plans.create_plan(svc.rt, await svc.catalog(), "deploy-uptime-kuma.yml")
    assert again.last_outcome is not None and again.last_outcome["outcome"] == "partial"
    assert again.warnings[0].startswith("the last run of deploy-uptime-kuma.yml (run-")
    assert "was partial: Uptime Kuma is not running" in again.warnings[0]
    assert any(w.startswith("now, before this plan runs: Uptime Kuma is not running") for w in again.warnings)


async def test_a_backup_with_the_database_down_is_partial_no_dump_was_written(
        svc: AnsibleService, docker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", str(tmp_path / "no-server-here"))  # pg_isready finds nothing to talk to
    monkeypatch.setattr(svc.rt.settings.ansible, "pass_env", ["HOMELAB_ROOT", "PGHOST"])
    _, result = await run(svc, "backup-postgres.yml")
    assert result.status == "succeeded" and result.outcome == "partial"
    assert result.outcome_reasons[0].startswith("no dump was written: no file matching ")
    assert "backups/postgres/all-*.sql.gz on ai" in result.outcome_reasons[0]  # the path as Ansible templated it


async def test_a_backup_with_the_database_up_is_achieved_with_the_dump_as_evidence(
        svc: AnsibleService, docker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = urlparse(svc.rt.store.url)
    query = parse_qs(url.query)
    import pgserver

    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"  # the server's own client tools
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("PGHOST", query.get("host", [url.hostname or ""])[0])
    monkeypatch.setenv("PGPORT", str(url.port or 5432))
    monkeypatch.setenv("PGUSER", url.username or "postgres")
    monkeypatch.setattr(svc.rt.settings.ansible, "pass_env", ["HOMELAB_ROOT", "PGHOST", "PGPORT", "PGUSER"])
    _, result = await run(svc, "backup-postgres.yml")
    assert result.outcome == "achieved", result.outcome_reasons
    assert result.checks[0]["ok"] and ".sql.gz" in result.checks[0]["evidence"]


async def test_a_failed_task_is_failed_whatever_the_checks(svc: AnsibleService) -> None:
    _, result = await run(svc, "break-things.yml")
    assert result.status == "failed" and result.outcome == "failed"
    assert result.outcome_reasons[0].startswith("A step that fails failed on ")


async def test_without_checks_achieved_says_nothing_verified_it(svc: AnsibleService) -> None:
    _, result = await run(svc, "echo-message.yml")
    assert result.outcome == "achieved" and result.checks == []
    assert "nothing verified it" in result.outcome_reasons[0]
