"""How `chiffon console` starts: it says where it listens once it answers, and a port in use fails at once.

`chiffon console` runs as a user starts it (a subprocess, the `chiffon` script). Speed is measured by
``benchmarks/console.py --only startup``, never here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chiffon.orchestrator.console.auth import hash_password
from tests.conftest import stop_group
from tests.console.helpers import CHIFFON, PASSWORD

pytest.importorskip("gradio", reason="the console needs the console extra (gradio)")

LISTENING = re.compile(r"chiffon console listening on (http://127\.0\.0\.1:(\d+))$")
GIVE_UP_S = 600  # only so that a broken start fails instead of hanging; never a speed assertion


def console_env(home: Path) -> dict[str, str]:
    return {**os.environ, "CHIFFON_HOME": str(home), "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "CHIFFON_CONSOLE__OPERATORS": json.dumps([{"name": "alice", "password_hash": hash_password(PASSWORD)}])}


@pytest.fixture
def started(home: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`chiffon console --port 0` (a free port, which only the listening line names); yields the process and
    the stderr lines read so far (a thread keeps reading them); interrupted at the end."""
    proc = subprocess.Popen([CHIFFON, "console", "--port", "0"], env=console_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        stop_group(proc, 60)
        reader.join(10)


def listening_url(proc: subprocess.Popen[str], lines: list[str]) -> str:
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        found = next((m for m in map(LISTENING.search, list(lines)) if m), None)
        if found:
            return found.group(1)
        assert proc.poll() is None, "\n".join(lines[-60:])
        time.sleep(0.1)
    raise AssertionError("no listening line:\n" + "\n".join(lines[-60:]))


def test_the_console_prints_its_url_once_it_answers(started: tuple[subprocess.Popen[str], list[str]]) -> None:
    proc, lines = started
    url = listening_url(proc, lines)
    reply = httpx.get(f"{url}/health", timeout=30)  # no retry: the line comes only once the server accepts
    assert reply.status_code == 200 and reply.json()["status"] in ("ok", "healthy", "degraded")
    assert int(url.rsplit(":", 1)[1]) != 0  # the port it really listens on, not the 0 that was asked


def test_a_port_in_use_is_refused_before_the_store_is_opened(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([CHIFFON, "console", "--port", str(port)], env=console_env(tmp_path),
                              capture_output=True, text=True, timeout=GIVE_UP_S)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert not (tmp_path / "postgres").exists()  # refused first: no embedded PostgreSQL was started
