"""Attack 5: secret extra vars stored redacted (so the run got the marker) while the plaintext sat in the
check's run folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.redact import REDACTED
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all, make_repo

SECRET = "hunter2-real-value"
PLAYBOOK = """# Write the database password where the service reads it (test helper for secret vars).
- name: Configure the database password
  hosts: ai
  gather_facts: false
  tasks:
    - name: Create the target directory
      ansible.builtin.file:
        path: "{{ homelab_root }}"
        state: directory
        mode: "0755"
    - name: Write the password file
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/db-password"
        content: "{{ db_password }}"
        mode: "0600"
      no_log: true
    - name: Write the note
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/db-note"
        content: "{{ db_note }}"
        mode: "0600"
      no_log: true
"""


def _files_containing(folder: Path, needle: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


async def test_a_secret_reaches_the_run_and_nowhere_else(rt: Runtime, tmp_path: Path, targets: Path) -> None:
    repo = make_repo(tmp_path / "iac")
    (repo / "db-password.yml").write_text(PLAYBOOK)
    git_commit_all(repo)
    svc = AnsibleService.for_runtime(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "db-password.yml", secret_vars=["db_note"],
                                   extra_vars={"db_password": SECRET, "db_note": SECRET + "-note"})
    assert plan.extra_vars == {"db_password": REDACTED, "db_note": REDACTED}
    row = await rt.store.pool.fetchrow("SELECT * FROM plans WHERE id=$1", plan.id)
    assert SECRET not in str(dict(row))
    assert _files_containing(rt.settings.runs_dir / f"{plan.id}-check", SECRET) == []
    assert _files_containing(rt.settings.audit_dir, SECRET) == []
    kept = rt.settings.secrets_dir / f"{plan.id}.yml"
    assert kept.stat().st_mode & 0o777 == 0o600 and rt.settings.secrets_dir.stat().st_mode & 0o777 == 0o700

    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded"
    assert (targets / "ai" / "db-password").read_text() == SECRET  # the real value, not the marker
    assert (targets / "ai" / "db-note").read_text() == SECRET + "-note"
    assert not kept.exists()
    assert _files_containing(rt.settings.runs_dir / result.run_id, SECRET) == []


async def test_a_rejected_plan_forgets_its_secrets(rt: Runtime, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "iac")
    (repo / "db-password.yml").write_text(PLAYBOOK)
    git_commit_all(repo)
    svc = AnsibleService.for_runtime(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "db-password.yml",
                                   extra_vars={"db_password": SECRET, "db_note": "x"})
    await plans.decide(rt, plan.id, "rejected", approver="tester", channel="cli")
    assert not (rt.settings.secrets_dir / f"{plan.id}.yml").exists()


async def test_ansible_does_not_see_chiffons_own_credentials(rt: Runtime, tmp_path: Path, targets: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "iac")
    (repo / "env-probe.yml").write_text(
        "# Write what the controller environment holds (test helper).\n- name: Probe\n  hosts: ai\n"
        "  gather_facts: false\n  tasks:\n    - name: Create the target directory\n      ansible.builtin.file:\n"
        "        path: \"{{ homelab_root }}\"\n        state: directory\n        mode: \"0755\"\n"
        "    - name: Write it\n      ansible.builtin.copy:\n        dest: \"{{ homelab_root }}/env.txt\"\n"
        "        content: \"[{{ lookup('env', 'CHIFFON_DATABASE_URL') }}][{{ lookup('env', 'ANTHROPIC_API_KEY') }}]"
        "[{{ lookup('env', 'HOMELAB_ROOT') | length > 0 }}]\"\n        mode: \"0600\"\n")
    git_commit_all(repo)
    monkeypatch.setenv("CHIFFON_DATABASE_URL", "postgresql://u:pw@db/x")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-000000000000000000")
    svc = AnsibleService.for_runtime(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "env-probe.yml")
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded"
    assert (targets / "ai" / "env.txt").read_text() == "[][][True]"


async def test_chiffon_home_and_run_folders_are_private(rt: Runtime, tmp_path: Path) -> None:
    import os

    home = rt.settings.home.stat().st_mode & 0o777
    assert home == (0o711 if os.geteuid() == 0 else 0o700)  # root: the pgserver user only traverses it
    for folder in (rt.settings.runs_dir, rt.settings.snapshots_dir, rt.settings.audit_dir):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    repo = make_repo(tmp_path / "iac")
    plan = await plans.create_plan(rt, await AnsibleService.for_runtime(rt, repo).catalog(), "echo-message.yml")
    assert (rt.settings.runs_dir / f"{plan.id}-check").stat().st_mode & 0o777 == 0o700
