"""Shared by the console's browser tests: `chiffon console` as a user starts it, and Chromium through Playwright."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chiffon.orchestrator.console.auth import hash_password
from tests.conftest import wait_healthy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHIFFON = str(Path(sys.executable).parent / "chiffon")
PASSWORD = "correct horse battery"
# Flags for a sandboxed, offline machine (see ../shared/ENVIRONMENT.md): no background fetches, no first run.
BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage"]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_console(home: Path, targets: Path, repo: Path, log: Path, **extra_env: str) -> Iterator[str]:
    """`chiffon console` on a free port with one operator (alice) and hosts ai and desktop; yields its base URL
    once /health answers, and stops it (SIGINT) on exit."""
    port = free_port()
    env = {**os.environ, "CHIFFON_HOME": str(home), "HOMELAB_ROOT": str(targets), "PYTHONUNBUFFERED": "1",
           "CHIFFON_CONSOLE__OPERATORS": json.dumps([{"name": "alice", "password_hash": hash_password(PASSWORD)}]),
           "CHIFFON_CONSOLE__REFRESH_S": "0.5", "CHIFFON_HOSTD__HEARTBEAT_S": "0.3",
           "CHIFFON_HOSTS": json.dumps({"ai": {"address": "127.0.0.1"}, "desktop": {"address": "127.0.0.1"}}),
           **extra_env}
    with log.open("w") as sink:
        proc = subprocess.Popen([CHIFFON, "console", "--port", str(port), "--repo", str(repo)], env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health", proc, log.read_text)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def log_in(tab: Any, base: str, name: str, password: str) -> None:
    await tab.goto(base + "/")
    await tab.get_by_label("username").fill(name)
    await tab.get_by_label("password").fill(password)
    await tab.get_by_role("button", name="Login").click()


async def choose(tab: Any, elem_id: str, text: str) -> None:
    """Pick the option holding ``text`` in the Gradio dropdown ``elem_id``."""
    box = tab.locator(f"#{elem_id} input")
    await box.click()
    await box.fill(text)
    await tab.get_by_role("option").filter(has_text=text).first.click()
