"""Shared fixtures: a hermetic CHIFFON_HOME with real embedded PostgreSQL and Redis,
a git copy of the example IaC repo, and the servers built on them."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chiffon.shared.config import Settings, load_settings
from chiffon.shared.resources import example_repo
from chiffon.shared.runtime import Runtime, open_runtime, stop_embedded

# Hermetic: never pick up a real host's overrides (deploy/config/hosts/<hostname>.yaml).
os.environ["CHIFFON_HOST"] = "pytest"
# Nor the developer's own config (~/.config/chiffon/chiffon.yaml) or the machine's (/etc/chiffon/chiffon.yaml):
# an empty XDG dir and a service file that does not exist (shared/config/files.py); a test sets its own.
_NO_CONFIG = Path(tempfile.mkdtemp(prefix="chiffon-test-xdg-"))
atexit.register(shutil.rmtree, _NO_CONFIG, True)
os.environ["XDG_CONFIG_HOME"] = str(_NO_CONFIG)
os.environ["CHIFFON_SYSTEM_CONFIG"] = str(_NO_CONFIG / "etc" / "chiffon.yaml")
# No idle watchdog per test home: the session stops every embedded server it started (below).
os.environ["CHIFFON_EMBEDDED__IDLE_STOP_S"] = "0"
# No packaged quick tier unless a test asks for one (tests/llm/test_packaged_model.py): the test group installs
# llama-cpp-python and the packaged models, and planning with them is the subject of those tests, not of all.
os.environ["CHIFFON_LLM__PACKAGED_DEFAULT"] = "off"

CHECKOUT = Path(__file__).resolve().parent.parent  # the repository root: tests/ lives in it
EXAMPLE = example_repo()
KUMA_REQUEST = "Deploy Uptime Kuma and add the existing portals to its config"

ECHO_PLAYBOOK = """# Write a message to a file (test helper for extra vars).
- name: Echo a message
  hosts: ai
  gather_facts: false
  tags: [test]
  vars:
    message: default
  tasks:
    - name: Create the target directory
      ansible.builtin.file:
        path: "{{ homelab_root }}"
        state: directory
        mode: "0755"
    - name: Write the message
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/echo.txt"
        content: "{{ message }}"
        mode: "0644"
"""

FAIL_PLAYBOOK = """# Fail on purpose after one good task (test helper for failure records).
- name: Break things
  hosts: east
  gather_facts: false
  tags: [test]
  tasks:
    - name: A step that works
      ansible.builtin.file:
        path: "{{ homelab_root }}/before-failure"
        state: directory
        mode: "0755"
    - name: A step that fails
      ansible.builtin.command: /bin/false
      changed_when: false
      check_mode: false
"""


def git_commit_all(path: Path) -> None:
    """``git init`` (if needed) and commit everything in ``path``."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    if not (path / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "test repo", "--allow-empty"], check=True, env=env)


def make_repo(dest: Path) -> Path:
    """A git copy of the example repo plus the test playbooks."""
    shutil.copytree(EXAMPLE, dest)
    (dest / "echo-message.yml").write_text(ECHO_PLAYBOOK)
    (dest / "break-things.yml").write_text(FAIL_PLAYBOOK)
    git_commit_all(dest)
    return dest


@pytest.fixture(scope="session", autouse=True)
def stop_what_the_tests_started(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Tests stop what they start: every embedded server whose home is under this session's temp dir."""
    yield
    from chiffon.shared import embedded

    base = tmp_path_factory.getbasetemp().resolve()
    for entry in embedded.find():
        if entry.home.is_relative_to(base):
            embedded.stop(entry)


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chiffon-home")


@pytest.fixture(autouse=True)
def keep_the_umask():  # type: ignore[no-untyped-def]
    """Each test starts with the umask the session started with: chiffon's runtime sets 077 process-wide
    (shared/runtime.make_private), which must not leak into the next test's subprocesses and files."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.fixture(scope="session", autouse=True)
def targets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the local inventory renders files (HOMELAB_ROOT), inherited by ansible-runner."""
    root = tmp_path_factory.mktemp("homelab-root")
    os.environ["HOMELAB_ROOT"] = str(root)
    os.environ.setdefault("CHIFFON_ANSIBLE__PASS_ENV", '["HOMELAB_ROOT"]')  # Ansible gets allow-listed env only
    return root


@pytest.fixture(scope="session")
def settings(home: Path) -> Settings:
    return load_settings(home=home)


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("iac") / "homelab-infra")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as runtime:
        yield runtime
    await stop_embedded(settings)


@pytest.fixture
def cli_env(home: Path, targets: Path) -> dict[str, str]:
    """Environment for `chiffon` subprocesses sharing the session's CHIFFON_HOME."""
    return {**os.environ, "CHIFFON_HOME": str(home), "HOMELAB_ROOT": str(targets)}


def stop_group(proc: subprocess.Popen, wait_s: float = 30) -> None:  # type: ignore[type-arg]
    """Stop ``proc``'s process group (started with ``start_new_session=True``) as Ctrl-C would: SIGINT, then
    SIGKILL after ``wait_s`` seconds. A process that already exited is left alone (its log says why)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen, output: Callable[[], str], timeout_s: float = 180,  # type: ignore[type-arg]
                 **client: Any) -> httpx.Response:
    """Poll ``url`` (a served part's ``/health``) until it answers 200; fail with ``output()`` (the process's
    log) when ``proc`` exits first or ``timeout_s`` passes. ``client``: httpx options (``verify`` for TLS)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reply = httpx.get(url, timeout=2, **client)
            if reply.status_code == 200:
                return reply
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, output()[-4000:]
        assert time.monotonic() < deadline, f"{url} never answered 200:\n" + output()[-4000:]
        time.sleep(0.3)
