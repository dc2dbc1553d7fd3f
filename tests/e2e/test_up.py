"""`chiffon up` starts a fresh home's suite in dependency order and reports the time to healthy; `chiffon down`
stops it. Real processes: embedded PostgreSQL and Redis, chiffon-hostd, the orchestrator over HTTP, a worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.conftest import EXAMPLE
from tests.llm.fakes import free_port

BIN = Path(sys.executable).parent


def chiffon(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "chiffon"), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, str]:
    """A host `lab` whose config assigns it the orchestrator, a worker and hostd, in a fresh CHIFFON_HOME."""
    config = tmp_path / "config" / "chiffon.yaml"
    config.parent.mkdir()
    config.write_text("hosts:\n  lab:\n    chiffon: [orchestrator, worker, hostd]\n"
                      "hostd:\n  heartbeat_s: 1\n  heartbeat_ttl_s: 5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIFFON_")}
    return {**env, "CHIFFON_CONFIG": str(config), "CHIFFON_HOST": "lab", "CHIFFON_HOME": str(tmp_path / "home"),
            "CHIFFON_HTTP__PORT": str(free_port()), "CHIFFON_HOSTD__PORT": str(free_port()),
            "CHIFFON_REPO": str(EXAMPLE)}  # the example only when asked for by path


async def test_up_starts_in_dependency_order_and_down_stops_everything(lab: dict[str, str]) -> None:
    try:
        started = chiffon(lab, "up", "--json")
        assert started.returncode == 0, started.stdout + started.stderr
        report = json.loads(started.stdout)
        parts = {c["name"]: c for c in report["components"]}
        assert [c["group"] for c in report["components"]] == ["store", "servers", "servers", "workers"]
        assert set(parts) == {"postgresql+redis", "hostd", "orchestrator", "worker"}
        store, worker = parts["postgresql+redis"]["ready_after_s"], parts["worker"]["ready_after_s"]
        servers = [parts["hostd"]["ready_after_s"], parts["orchestrator"]["ready_after_s"]]
        assert store <= min(servers) and max(servers) <= worker  # a group starts once the one before is ready
        assert report["healthy"] and report["time_to_healthy_s"] == max(store, worker, *servers)

        base = f"http://127.0.0.1:{lab['CHIFFON_HTTP__PORT']}"
        token_file = Path(lab["CHIFFON_HOME"]) / "http-token"  # HTTP needs a token; `up` made one, 0600
        assert token_file.stat().st_mode & 0o777 == 0o600
        bearer = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        async with Client(StreamableHttpTransport(f"{base}/mcp", headers=bearer)) as client:
            listed = await client.call_tool("ansible_list_playbooks", {})
            assert not listed.is_error
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{base}/mcp", json={})).status_code == 401
            metrics = (await http.get(f"{base}/metrics", headers=bearer)).text
            health = (await http.get(f"{base}/health")).json()
        assert 'chiffon_mcp_tool_calls_total{outcome="ok",server="chiffon",tool="ansible_list_playbooks"} 1.0' \
            in metrics
        assert 'chiffon_queue_depth{state="length",stream="agent_tasks:infra:normal"}' in metrics
        assert health["status"] == "ok"

        again = json.loads(chiffon(lab, "up", "--json").stdout)
        assert {c["state"] for c in again["components"] if c["group"] != "store"} == {"already running"}

        doctor = json.loads(chiffon(lab, "doctor", "--json").stdout)
        host = next(p for p in doctor["parts"] if p["service"] == "host:lab")
        assert host["status"] == "ok" and host["data"]["state"] == "available"  # hostd's heartbeat arrived
    finally:
        stopped = chiffon(lab, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert "worker, orchestrator, hostd" in stopped.stdout or "worker, hostd, orchestrator" in stopped.stdout
    assert "redis" in stopped.stdout and "postgresql" in stopped.stdout
    pids = [c["pid"] for c in report["components"] if c["pid"]]
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert chiffon(lab, "down").stdout.strip() == "nothing was running"


def test_up_refuses_an_unknown_group(lab: dict[str, str]) -> None:
    proc = chiffon(lab, "up", "--group", "everything")
    assert proc.returncode == 2 and "'everything' is not one of store, servers, workers" in proc.stderr
