"""Issue 28: what runs is all that was approved (attacks 3, 4 and 7).

A vault password script, a role outside the repo, an absolute ``vars_files``: each is code or data the run
reads. Each is pinned by the plan's snapshot (copied or hashed), refused when executable unless the owner
allows it, and named in the plan's warnings when it runs during the check.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import PlanStateError
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all

LOCAL = "[app]\nweb ansible_connection=local ansible_python_interpreter={python}\n"


def _playbook(tasks: list[dict], **play: object) -> str:
    return "# Scope test playbook\n" + yaml.safe_dump(
        [{"name": "Scope", "hosts": "app", "gather_facts": False, **play, "tasks": tasks}], sort_keys=False)


def _repo(dest: Path, *, cfg: str = "", playbook: str | None = None, files: dict[str, str] | None = None) -> Path:
    dest.mkdir(parents=True)
    (dest / "ansible.cfg").write_text("[defaults]\ninventory = inventory.ini\nretry_files_enabled = False\n" + cfg)
    (dest / "inventory.ini").write_text(LOCAL.format(python=sys.executable))
    (dest / "site.yml").write_text(playbook or _playbook([{"name": "Say hi", "ansible.builtin.debug": {"msg": "hi"}}]))
    for name, text in (files or {}).items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    git_commit_all(dest)
    return dest


def _script(path: Path, marker: Path, password: str = "pw") -> Path:
    """An executable vault password script that leaves ``marker`` behind when it runs."""
    path.write_text(f"#!/bin/sh\ntouch {marker}\necho {password}\n")
    path.chmod(0o755)
    return path


def _encrypt(repo: Path, password: str = "pw") -> None:
    """``group_vars/all/vault.yml`` encrypted with ``password``."""
    secret = repo.parent / "plain-pass"
    secret.write_text(password + "\n")
    vault = repo / "group_vars" / "all" / "vault.yml"
    vault.parent.mkdir(parents=True)
    vault.write_text("vault_token: s3cret\n")
    subprocess.run([str(Path(sys.executable).with_name("ansible-vault")), "encrypt", "--vault-password-file",
                    str(secret), str(vault)], check=True, capture_output=True)


def _vault_repo(dest: Path, marker: Path, *, encrypted: bool = True) -> Path:
    """A repo whose ansible.cfg names ``vault.sh``, an executable script that touches ``marker``."""
    repo = _repo(dest, cfg="vault_password_file = vault.sh\n")
    _script(repo / "vault.sh", marker)
    if encrypted:
        _encrypt(repo)
    git_commit_all(repo)
    return repo


@contextmanager
def scripts_allowed(rt: Runtime) -> Iterator[None]:
    rt.settings.ansible.allow_repo_vault_scripts = True
    try:
        yield
    finally:
        rt.settings.ansible.allow_repo_vault_scripts = False


async def _plan(rt: Runtime, repo: Path) -> plans.Plan:
    return await plans.create_plan(rt, await AnsibleService.for_runtime(rt, repo).catalog(), "site.yml")


async def _approved(rt: Runtime, repo: Path) -> plans.Plan:
    plan = await _plan(rt, repo)
    assert plan.blocked_reason is None, plan.blocked_reason
    return await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")


async def _execute(rt: Runtime, repo: Path, plan: plans.Plan) -> execution.RunResult:
    return await execution.execute(rt, await AnsibleService.for_runtime(rt, repo).catalog(), plan.id)


async def test_a_vault_script_edited_after_approval_does_not_run_at_execute(rt: Runtime, tmp_path: Path) -> None:
    checked, pwned = tmp_path / "checked", tmp_path / "pwned"
    repo = _vault_repo(tmp_path / "iac", checked)
    with scripts_allowed(rt):
        plan = await _approved(rt, repo)
        _script(repo / "vault.sh", pwned)  # edited after approval: would run as root at execute
        try:
            result = await _execute(rt, repo, plan)
        except PlanStateError:
            result = None
    assert checked.exists()  # the approved script ran during the check, as the plan said
    assert not pwned.exists()
    assert result is None or result.status == "succeeded"


async def test_an_executable_vault_script_is_refused_without_the_setting(rt: Runtime, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    repo = _vault_repo(tmp_path / "iac", ran)
    plan = await _plan(rt, repo)
    assert plan.blocked_reason and "vault.sh" in plan.blocked_reason
    assert "allow_repo_vault_scripts" in plan.blocked_reason and plan.check_result["status"] == "not_run"
    assert not ran.exists()


async def test_an_allowed_vault_script_is_named_in_the_plan(rt: Runtime, tmp_path: Path) -> None:
    repo = _vault_repo(tmp_path / "iac", tmp_path / "ran")
    with scripts_allowed(rt):
        plan = await _plan(rt, repo)
    assert plan.blocked_reason is None and plan.check_result["status"] == "successful"
    assert any(f"runs {repo / 'vault.sh'} during the check and the run" in w for w in plan.warnings), plan.warnings


async def test_the_vault_password_is_not_passed_when_nothing_is_encrypted(rt: Runtime, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    repo = _vault_repo(tmp_path / "iac", ran, encrypted=False)
    plan = await _plan(rt, repo)
    assert plan.check_result["status"] == "successful" and plan.blocked_reason is None
    assert not ran.exists()  # ansible.cfg's vault_password_file is not run: nothing needs it


async def test_an_external_role_edited_after_approval_does_not_run_its_added_task(rt: Runtime, tmp_path: Path) -> None:
    external = tmp_path / "ext-roles" / "greeter" / "tasks"
    external.mkdir(parents=True)
    (external / "main.yml").write_text("- name: Greet\n  ansible.builtin.debug:\n    msg: hello\n")
    pwned = tmp_path / "pwned"
    repo = _repo(tmp_path / "iac", cfg=f"roles_path = roles:{tmp_path / 'ext-roles'}\n", playbook=(
        "# Greet\n- name: Greet\n  hosts: app\n  gather_facts: false\n  roles:\n    - greeter\n"))
    plan = await _approved(rt, repo)
    assert any(str(tmp_path / "ext-roles") in w for w in plan.warnings), plan.warnings
    with (external / "main.yml").open("a") as fh:
        fh.write(f"- name: Added after approval\n  ansible.builtin.shell: touch {pwned}\n")
    with pytest.raises(PlanStateError, match="ext-roles/greeter/tasks/main.yml"):
        await _execute(rt, repo, plan)
    assert not pwned.exists()
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0


async def test_an_absolute_vars_file_edited_after_approval_is_detected(rt: Runtime, tmp_path: Path) -> None:
    outside = tmp_path / "outside-vars.yml"
    outside.write_text("greeting: hello\n")
    repo = _repo(tmp_path / "iac", playbook=_playbook(
        [{"name": "Say it", "ansible.builtin.debug": {"msg": "{{ greeting }}"}}], vars_files=[str(outside)]))
    plan = await _approved(rt, repo)
    assert any(str(outside) in w for w in plan.warnings), plan.warnings
    outside.write_text("greeting: \"{{ lookup('pipe', 'id') }}\"\n")
    with pytest.raises(PlanStateError, match="outside-vars.yml"):
        await _execute(rt, repo, plan)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0


async def test_a_pipe_lookup_is_named_in_the_plan(rt: Runtime, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "iac", playbook=_playbook(
        [{"name": "Who", "ansible.builtin.debug": {"msg": "{{ lookup('pipe', 'id -un') }}"}}]))
    plan = await _plan(rt, repo)
    assert any("pipe" in w and "id -un" in w and "during the check" in w for w in plan.warnings), plan.warnings


async def test_an_inventory_script_is_named_in_the_plan(rt: Runtime, tmp_path: Path) -> None:
    script = ("#!/bin/sh\necho '{\"app\": {\"hosts\": [\"web\"]}, \"_meta\": {\"hostvars\": {\"web\": "
              "{\"ansible_connection\": \"local\", \"ansible_python_interpreter\": \"" + sys.executable + "\"}}}}'\n")
    repo = _repo(tmp_path / "iac", files={"inventory.sh": script})
    (repo / "inventory.sh").chmod(0o755)
    (repo / "ansible.cfg").write_text("[defaults]\ninventory = inventory.sh\nretry_files_enabled = False\n")
    os.unlink(repo / "inventory.ini")
    git_commit_all(repo)
    assert os.stat(repo / "inventory.sh").st_mode & stat.S_IXUSR
    plan = await _plan(rt, repo)
    assert any("inventory.sh" in w and "during the check" in w for w in plan.warnings), plan.warnings


async def test_a_vault_password_file_outside_the_repo_changed_after_approval_is_refused(
        rt: Runtime, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "iac")
    _encrypt(repo)
    git_commit_all(repo)
    outside = tmp_path / "outside-pass"
    outside.write_text("pw\n")
    rt.settings.ansible.vault_password_file = outside
    try:
        plan = await _approved(rt, repo)
        outside.write_text("another\n")
        with pytest.raises(PlanStateError, match="outside-pass"):
            await _execute(rt, repo, plan)
    finally:
        rt.settings.ansible.vault_password_file = None
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0


async def test_a_galaxy_role_edited_after_approval_is_refused(rt: Runtime, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    tasks = tmp_path / "home" / ".ansible" / "roles" / "greeter" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text("- name: Greet\n  ansible.builtin.debug:\n    msg: hello\n")
    repo = _repo(tmp_path / "iac", playbook=(
        "# Greet\n- name: Greet\n  hosts: app\n  gather_facts: false\n  roles:\n    - greeter\n"))
    plan = await _approved(rt, repo)
    assert plan.check_result["status"] == "successful"
    assert any(str(tasks.parent) in w for w in plan.warnings), plan.warnings
    (tasks / "extra.yml").write_text("- name: Added\n  ansible.builtin.command: id\n")
    with pytest.raises(PlanStateError, match="greeter/tasks/extra.yml"):
        await _execute(rt, repo, plan)
