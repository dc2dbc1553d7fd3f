"""A real chiffon-hostd (subprocess, real models from PyPI packages) and the homelab commands it hears."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.llm.fakes import free_port

BIN = Path(sys.executable).parent
COMMANDS = [
    "Deploy Uptime Kuma on the east server.",
    "Restart Redis.",
    "Back up the Postgres database.",
    "Check the disk space on the desktop.",
    "Show me the failed runs from last week.",
]
VOICE = "jm_kumo"  # a Kokoro v1.0 voice the packaged model carries; it speaks English with lang en-us
MAX_AUDIO_S = 20
MAX_TTS_CHARS = 600


@pytest.fixture(scope="session")
def hostd_env(home: Path) -> dict[str, str]:
    return {**os.environ, "CHIFFON_HOME": str(home), "CHIFFON_VOICE__MAX_AUDIO_S": str(MAX_AUDIO_S),
            "CHIFFON_VOICE__MAX_TTS_CHARS": str(MAX_TTS_CHARS)}


@pytest.fixture(scope="session")
def hostd(hostd_env: dict[str, str]) -> Iterator[str]:
    """``chiffon-hostd`` on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "chiffon-hostd"), "--port", str(port)], env=hostd_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chiffon-hostd exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        raise RuntimeError("chiffon-hostd did not answer /health within 60 s")
    yield url
    proc.terminate()
    proc.wait(15)
