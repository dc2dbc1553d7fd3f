"""Attack 1: extra vars that take over Ansible (connection, shell, magic names) during check mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chiffon.orchestrator.planner import plan_request
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime
from tests.e2e.test_cli import chiffon


def test_shell_executable_extra_var_is_refused_and_runs_nothing(cli_env: dict[str, str], repo: Path,
                                                                tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    proc = chiffon(cli_env, "run", "deploy redis", "--repo", str(repo), "--json",
                   "-e", f"ansible_shell_executable=touch {marker}; /bin/sh")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "'ansible_shell_executable' is one of Ansible's own variables" in " ".join(proc.stderr.split())
    assert not marker.exists() and proc.stdout == ""


@pytest.mark.parametrize("key", ["ansible_connection", "ansible_python_interpreter", "ansible_become_exe",
                                 "hostvars", "environment", "inventory_hostname", "omit", "playbook_dir",
                                 "become_method", "connection"])
async def test_ansible_and_magic_names_are_refused(rt: Runtime, repo: Path, key: str) -> None:
    with pytest.raises(InvalidInput, match="one of Ansible's own variables"):
        await plan_request(AnsibleService.for_runtime(rt, repo), PlanRequest(request="deploy redis",
                                                                             extra_vars={key: "x"}))


async def test_a_variable_the_playbook_never_reads_is_refused_with_the_ones_it_reads(rt: Runtime,
                                                                                   repo: Path) -> None:
    with pytest.raises(InvalidInput, match=r"'redis_password' is not a variable deploy-redis.yml reads; it reads: "
                                           r".*redis_maxmemory"):
        await plan_request(AnsibleService.for_runtime(rt, repo), PlanRequest(request="deploy redis",
                                                                             extra_vars={"redis_password": "x"}))


async def test_a_variable_the_playbook_reads_is_accepted_and_stays_literal(rt: Runtime, repo: Path) -> None:
    plan = await plan_request(AnsibleService.for_runtime(rt, repo), PlanRequest(
        request="deploy redis", extra_vars={"redis_maxmemory": "{{ lookup('pipe', 'id') }}"}))
    assert plan.extra_vars == {"redis_maxmemory": "{{ lookup('pipe', 'id') }}"}
    assert "uid=" not in plan.diff and "lookup('pipe', 'id')" in plan.diff


async def test_the_operator_can_allow_more_but_never_ansible_names(rt: Runtime, repo: Path) -> None:
    rt.settings.ansible.allowed_extra_vars = ["maintenance_note", "ansible_connection"]
    try:
        svc = AnsibleService.for_runtime(rt, repo)
        plan = await plan_request(svc, PlanRequest(request="deploy redis", extra_vars={"maintenance_note": "ok"}))
        assert plan.extra_vars == {"maintenance_note": "ok"}
        with pytest.raises(InvalidInput, match="one of Ansible's own variables"):
            await plan_request(svc, PlanRequest(request="deploy redis", extra_vars={"ansible_connection": "local"}))
    finally:
        rt.settings.ansible.allowed_extra_vars = []


def test_tags_that_smuggle_options_are_refused(cli_env: dict[str, str], repo: Path) -> None:
    proc = chiffon(cli_env, "run", "deploy redis", "--repo", str(repo), "--json", "--skip-tags",
                   "x --extra-vars=@/etc/passwd")
    assert proc.returncode == 2 and "is not a tag" in proc.stderr and json.loads(proc.stdout or "{}") == {}
