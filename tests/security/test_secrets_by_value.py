"""Attack 5 (issue 28): a secret leaks under any other name.

A secret extra var rendered into a template (``requirepass <value>``, ``DB_PASS=<value>``) or a failing task's
message holding it went, unmasked, into the check-mode diff, the plan and run replies, the audit repo, the error
bus, the Redis streams, the logs and the run folders: redaction was by pattern only, though chiffon knows the
value. Here every place chiffon writes or returns is searched for the value itself.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from chiffon.servers.ansible import attempt, execution, plans
from chiffon.servers.ansible.events import TaskEvent
from chiffon.servers.ansible.runner import run_playbook
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared import error_bus
from chiffon.shared.redact import REDACTED, Redactor
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all, make_repo

SECRET = "mellon-7f3a9c-by-value"  # no pattern matches it: only its value says it is a secret
VAULTED = "vaulted-0c41e2-plaintext"
INLINE_VAULTED = "inline-vault-9d8e7f-plaintext"
CLOUD = "cloud-secret-5b6a-env-value"

RENDER_PLAYBOOK = """# Render a service's config with its password, then fail to log in (test helper for attack 5).
- name: Configure the cache with its password
  hosts: ai
  gather_facts: false
  tasks:
    - name: Create the target directory
      ansible.builtin.file:
        path: "{{ homelab_root }}"
        state: directory
        mode: "0755"
    - name: Render the cache config
      ansible.builtin.template:
        src: leak.conf.j2
        dest: "{{ homelab_root }}/leak.conf"
        mode: "0600"
    - name: Log in with the password
      ansible.builtin.fail:
        msg: "cannot log in with {{ db_password }}"
      when: not ansible_check_mode
"""
TEMPLATE = "requirepass {{ db_password }}\nDB_PASS={{ db_password }}\n"

VAULT_PLAYBOOK = """# Render values kept in ansible-vault (test helper for attack 5).
- name: Configure from the vault
  hosts: ai
  gather_facts: false
  vars_files:
    - vault-vars.yml
    - inline-vars.yml
  tasks:
    - name: Create the target directory
      ansible.builtin.file:
        path: "{{ homelab_root }}"
        state: directory
        mode: "0755"
    - name: Render the vaulted values
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/vaulted.conf"
        content: "auth {{ vault_cache_password }}\\nkey {{ inline_value }}\\n"
        mode: "0600"
"""

ENV_PLAYBOOK = """# Show what the controller's environment holds (test helper for attack 5).
- name: Probe the environment
  hosts: ai
  gather_facts: false
  tasks:
    - name: Show a cloud credential
      ansible.builtin.debug:
        msg: "cloud=[{{ lookup('ansible.builtin.env', 'SOME_CLOUD_SECRET') }}]"
"""


def _files_holding(folder: Path, needle: str, skip: tuple[Path, ...] = ()) -> list[str]:
    """Files under ``folder`` (``skip`` folders aside) whose bytes hold ``needle``."""
    found = []
    for path in folder.rglob("*"):
        if any(path.is_relative_to(s) for s in skip) or not path.is_file() or path.is_symlink():
            continue
        try:
            if needle.encode() in path.read_bytes():
                found.append(str(path))
        except OSError:  # a file that went away (a PostgreSQL temp file) while searching
            continue
    return found


async def _redis_contents(rt: Runtime) -> str:
    """Every key of chiffon's Redis with its value (streams in full), as one text."""
    redis = rt.bus.redis
    out = []
    async for key in redis.scan_iter(count=500):
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        reads: dict[str, Any] = {
            "stream": lambda k: redis.xrange(k),
            "string": lambda k: redis.get(k),
            "list": lambda k: redis.lrange(k, 0, -1),
            "hash": lambda k: redis.hgetall(k),
            "set": lambda k: redis.smembers(k),
            "zset": lambda k: redis.zrange(k, 0, -1),
        }
        read = reads.get(kind)
        out.append(f"{key!r}: {await read(key) if read else kind}")
    return "\n".join(out)


def _audit_history(rt: Runtime) -> str:
    return subprocess.run(["git", "-C", str(rt.settings.audit_dir), "log", "-p", "--all"], check=True,
                          capture_output=True, text=True).stdout


async def _publish(rt: Runtime, plan_id: str) -> Any:
    async def on_event(event: TaskEvent) -> None:
        await attempt.publish_progress(rt, plan_id, event)
    return on_event


async def test_a_secret_value_is_redacted_everywhere_chiffon_writes_or_answers(
        rt: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo = make_repo(tmp_path / "iac")
    (repo / "leak.yml").write_text(RENDER_PLAYBOOK)
    (repo / "templates" / "leak.conf.j2").write_text(TEMPLATE)
    git_commit_all(repo)
    svc = AnsibleService.for_runtime(rt, repo)

    plan = await plans.create_plan(rt, await svc.catalog(), "leak.yml", extra_vars={"db_password": SECRET})
    assert "requirepass " + REDACTED in plan.diff and "DB_PASS=" + REDACTED in plan.diff  # the diff is still shown
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(rt, await svc.catalog(), plan.id, on_event=await _publish(rt, plan.id))
    assert result.status == "failed" and result.failure is not None
    assert result.failure["message"] == f"cannot log in with {REDACTED}"
    reporter = error_bus._reporters[-1]
    await reporter.drain()

    assert SECRET not in plan.model_dump_json()
    assert SECRET not in result.model_dump_json()
    assert SECRET not in str(await execution.run_events(rt, result.run_id))
    assert SECRET not in _audit_history(rt)
    assert SECRET not in await _redis_contents(rt)
    errors = await rt.bus.redis.xrange(error_bus.ERRORS_STREAM)
    assert any("cannot log in with" in str(fields) for _, fields in errors)  # it was reported, masked
    assert SECRET not in caplog.text
    assert _files_holding(rt.settings.home, SECRET) == []  # run folders, audit repo, Redis AOF, PostgreSQL files


async def test_a_vault_decrypted_value_is_redacted_in_the_diff(rt: Runtime, tmp_path: Path) -> None:
    password = tmp_path / "vault-pass"
    password.write_text("correct-horse-battery\n")
    vault = VaultLib([("default", VaultSecret(b"correct-horse-battery"))])
    repo = make_repo(tmp_path / "iac")
    (repo / "vaulted.yml").write_text(VAULT_PLAYBOOK)
    (repo / "vault-vars.yml").write_bytes(vault.encrypt(yaml.safe_dump({"vault_cache_password": VAULTED})))
    inline = vault.encrypt(INLINE_VAULTED).decode()
    (repo / "inline-vars.yml").write_text(
        "inline_value: !vault |\n" + "".join(f"  {line}\n" for line in inline.splitlines()))
    git_commit_all(repo)
    svc = AnsibleService.for_runtime(rt, repo)
    rt.settings.ansible.vault_password_file = password
    try:
        plan = await plans.create_plan(rt, await svc.catalog(), "vaulted.yml")
    finally:
        rt.settings.ansible.vault_password_file = None
    assert plan.blocked_reason is None and plan.check_result and plan.check_result["status"] == "successful"
    assert f"auth {REDACTED}" in plan.diff and f"key {REDACTED}" in plan.diff
    assert VAULTED not in plan.model_dump_json() and INLINE_VAULTED not in plan.model_dump_json()
    assert _files_holding(rt.settings.runs_dir / f"{plan.id}-check", VAULTED) == []


async def test_a_run_folder_holds_no_environment(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "iac")
    (repo / "env-probe.yml").write_text(ENV_PLAYBOOK)
    git_commit_all(repo)
    monkeypatch.setenv("SOME_CLOUD_SECRET", CLOUD)
    private = tmp_path / "run"
    outcome = await run_playbook(repo, "env-probe.yml", repo / "inventories" / "local.ini", private, check=False)
    assert outcome.status == "successful"
    assert [e.message for e in outcome.events] == ["cloud=[]"]  # not allow-listed: Ansible does not see it
    assert not (private / "env" / "envvars").exists()
    assert _files_holding(private, CLOUD) == []
    assert _files_holding(private, os.environ["HOMELAB_ROOT"]) == []  # nor any other environment value


async def test_a_variable_named_in_pass_env_reaches_ansible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "iac")
    (repo / "env-probe.yml").write_text(ENV_PLAYBOOK)
    git_commit_all(repo)
    monkeypatch.setenv("SOME_CLOUD_SECRET", CLOUD)
    outcome = await run_playbook(repo, "env-probe.yml", repo / "inventories" / "local.ini", tmp_path / "run",
                                 check=False, pass_env=["SOME_CLOUD_SECRET"])
    assert [e.message for e in outcome.events] == [f"cloud=[{CLOUD}]"]
    assert _files_holding(tmp_path / "run", CLOUD) != []  # the event itself says it: Ansible was given it
    for command in (tmp_path / "run").glob("artifacts/*/command"):
        assert "env" not in json.loads(command.read_text())


def test_a_redactor_masks_raw_and_json_escaped_values_longest_first() -> None:
    redactor = Redactor({"db_password": 'pa"ss-word', "other": "pa\"ss-word-longer", "short": "yes"})
    text = 'a pa"ss-word-longer b {"x": "pa\\"ss-word"} yes'
    assert redactor.text(text) == f'a {REDACTED} b {{"x": "{REDACTED}"}} yes'
    assert "pa" not in repr(redactor)
