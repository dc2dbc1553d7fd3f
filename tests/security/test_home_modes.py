"""Attack 6: state under CHIFFON_HOME readable by another local account (Redis AOF, dump.rdb, chroma.sqlite3)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.servers.memory.service import open_memory
from chiffon.servers.memory.vectors import Identity
from chiffon.shared.config import load_settings
from chiffon.shared.runtime import open_runtime, stop_embedded
from tests.conftest import make_repo

SECRET = "leaked-secret-9f3c2b"
AS_ROOT = os.name == "posix" and os.geteuid() == 0
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def pgserver_uid() -> int | None:
    import pwd

    try:
        return pwd.getpwnam("pgserver").pw_uid
    except KeyError:
        return None


def too_open(home: Path) -> list[str]:
    """Every path under ``home`` a group or other account may read, write or enter, with its mode."""
    found = []
    for path in [home, *home.rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        allowed = 0o011 if (path == home and AS_ROOT) else 0  # the documented traverse bit for pgserver, as root
        if path.is_relative_to(home / "postgres") and stat.S_ISSOCK(st.st_mode):
            continue  # PostgreSQL's socket is 0777 by design; the 0700 data dir (asserted below) hides it
        if mode & 0o077 & ~allowed:
            found.append(f"{path.relative_to(home)} {mode:04o}")
    return found


@pytest.fixture
async def used_home(tmp_path: Path) -> Path:
    """A home that has held a plan, a run, a memory and a secret in Redis; its servers stopped (dump.rdb written)."""
    settings = load_settings(home=tmp_path / "home")
    repo = make_repo(tmp_path / "iac")
    try:
        async with open_runtime(settings) as rt, open_memory(rt) as memory:
            svc = AnsibleService.for_runtime(rt, repo)
            plan = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "hi"})
            await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
            assert (await execution.execute(rt, await svc.catalog(), plan.id)).status == "succeeded"
            await memory.vectors.remember(f"The vault password is {SECRET}.", "shared", Identity())
            await rt.bus.redis.set("chiffon:test:secret", SECRET)
    finally:
        await stop_embedded(settings)
    return settings.home


async def test_no_file_or_folder_under_the_home_is_open_to_other_accounts(used_home: Path) -> None:
    assert (used_home / "redis" / "appendonly.aof").exists() or (used_home / "redis" / "appendonlydir").exists()
    assert (used_home / "chroma" / "chroma.sqlite3").exists() and (used_home / "redis" / "dump.rdb").exists()
    assert too_open(used_home) == []
    assert stat.S_IMODE((used_home / "audit" / ".git").stat().st_mode) == 0o700
    postgres = (used_home / "postgres").stat()
    assert stat.S_IMODE(postgres.st_mode) == 0o700
    assert postgres.st_uid == (pgserver_uid() if AS_ROOT else os.geteuid())  # as root, pgserver's user owns it


@pytest.mark.skipif(not AS_ROOT, reason="needs root to act as user nobody")
async def test_user_nobody_cannot_list_or_read_the_audit_repository(used_home: Path) -> None:
    head = used_home / "audit" / ".git" / "HEAD"
    done = subprocess.run([*NOBODY, "cat", str(head)], capture_output=True, timeout=30)
    assert done.returncode != 0 and b"Permission denied" in done.stderr


@pytest.mark.skipif(not AS_ROOT, reason="needs root to act as user nobody")
async def test_user_nobody_cannot_read_redis_or_chroma_data(used_home: Path) -> None:
    aof = next(p for p in (used_home / "redis").rglob("appendonly*") if p.is_file())
    for path in (aof, used_home / "redis" / "dump.rdb", used_home / "chroma" / "chroma.sqlite3"):
        done = subprocess.run([*NOBODY, "cat", str(path)], capture_output=True, timeout=30)
        assert done.returncode != 0 and b"Permission denied" in done.stderr, path
        assert SECRET.encode() not in done.stdout


async def test_a_playbook_creates_files_with_the_umask_chiffon_started_with(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """chiffon's own files are 0600 (umask 077), but a local task that writes without ``mode:`` gets what a shell
    would give it: a service reading a config it deployed must not break because chiffon ran the playbook."""
    from chiffon.servers.ansible.runner import run_playbook
    from chiffon.shared import runtime

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                                    "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n")
    out = tmp_path / "deployed.conf"
    (repo / "write.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                    f"    - ansible.builtin.copy:\n        content: \"x\\n\"\n        dest: {out}\n")
    monkeypatch.setattr(runtime, "_started_with", 0o022)
    previous = os.umask(runtime.PRIVATE_UMASK)
    try:
        outcome = await run_playbook(repo, "write.yml", repo / "hosts.yml", tmp_path / "run", check=False)
    finally:
        os.umask(previous)
    assert outcome.status == "successful", outcome.failures
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert not too_open(tmp_path / "run")  # what ansible-runner wrote for chiffon stays private
