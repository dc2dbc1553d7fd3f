"""Two real chiffon-hostd processes on loopback feeding heartbeats to the session's Redis: busy pauses a plan,
free resumes it, a killed daemon goes offline after its TTL, and /capacity answers from a replayed recording."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chiffon.orchestrator.runs import dispatch_run, running_infra_worker
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.events import TaskEvent
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.hosts import HEARTBEAT_KEY, OVERRIDE_KEY, SEEN_KEY, host_states
from chiffon.shared.runtime import Runtime
from tests.llm.fakes import free_port

BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).parents[1] / "fixtures" / "gpu"
TTL_S = 2.0


def chiffon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "chiffon"), *args], env=env, capture_output=True, text=True, timeout=120)


class Hostd:
    """One ``chiffon-hostd --host NAME`` process."""

    def __init__(self, name: str, env: dict[str, str], replay: str | None = None) -> None:
        self.name = name
        self.port = free_port()
        extra = {"CHIFFON_HOSTD__HEARTBEAT_S": "0.5", "CHIFFON_HOSTD__HEARTBEAT_TTL_S": str(TTL_S),
                 "CHIFFON_HOSTD__MODEL_VRAM_MB": json.dumps({"qwen2.5-1.5b": 1800, "qwen2.5-7b": 5200})}
        if replay:
            extra["CHIFFON_HOSTD__GPU_REPLAY"] = str(FIXTURES / replay)
        self.proc = subprocess.Popen(
            [str(BIN / "chiffon-hostd"), "--host", name, "--bind", "127.0.0.1", "--port", str(self.port)],
            env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                assert self.proc.poll() is None, f"chiffon-hostd {self.name} exited"
                try:
                    if (await client.get(f"{self.url}/health", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"chiffon-hostd {self.name} never answered")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


async def wait_for(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest_asyncio.fixture(loop_scope="session")
async def daemons(rt: Runtime, cli_env: dict[str, str]) -> AsyncIterator[dict[str, Hostd]]:
    """hostd for `ai` (no GPU) and `desktop` (replaying an RX 550 recording); their keys removed afterwards so
    other tests see hosts that never reported (available)."""
    env = {**cli_env, "CHIFFON_HOST": "pytest"}
    procs = {"ai": Hostd("ai", env), "desktop": Hostd("desktop", env, replay="amd-rx550-gaming.json")}
    try:
        await asyncio.gather(*(p.ready() for p in procs.values()))
        yield procs
    finally:
        for p in procs.values():
            p.stop()
        keys = [k.format(host=h) for h in procs for k in (HEARTBEAT_KEY, OVERRIDE_KEY)]
        await rt.bus.redis.delete(*keys)
        await rt.bus.redis.srem(SEEN_KEY, *procs)


async def states(rt: Runtime, *hosts: str) -> dict[str, dict[str, Any]]:
    return await host_states(rt.bus, list(hosts), True)


async def test_busy_host_pauses_a_plan_which_resumes_when_freed(
        rt: Runtime, repo: Path, daemons: dict[str, Hostd], cli_env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt.settings.hostd, "heartbeat_s", 0.2)  # the dispatcher re-reads host state this often
    await wait_for(lambda: _all_available(rt, "ai", "desktop"))
    svc = AnsibleService(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "resumed"})
    assert plan.hosts == ["ai"]
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")

    busy = chiffon(cli_env, "host", "busy", "ai", "--reason", "gaming tonight")
    assert busy.returncode == 0, busy.stderr
    events: list[dict[str, Any]] = []

    async def on_event(event: TaskEvent) -> None:
        events.append(event.as_dict())

    async with running_infra_worker(svc):
        run = asyncio.create_task(dispatch_run(rt, plan.id, on_event=on_event, timeout_s=120))

        async def paused() -> plans.Plan | None:
            p = await plans.get_plan(rt, plan.id)
            return p if p.status == "paused" else None

        waiting = await wait_for(paused)
        assert "ai is busy" in (waiting.paused_reason or "") and "gaming tonight" in (waiting.paused_reason or "")
        status = chiffon(cli_env, "status", plan.id)
        assert "paused" in status.stdout and "gaming tonight" in status.stdout
        await asyncio.sleep(1.0)
        assert not run.done()  # nothing runs while the host is busy
        assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0

        freed = chiffon(cli_env, "host", "free", "ai")
        assert freed.returncode == 0, freed.stderr
        result = await asyncio.wait_for(run, 120)

    assert result.status == "succeeded"
    assert (Path(os.environ["HOMELAB_ROOT"]) / "ai" / "echo.txt").read_text() == "resumed"
    kinds = [e["event"] for e in events if e["event"].startswith("chiffon_")]
    assert kinds == ["chiffon_pause", "chiffon_resume"]
    final = await plans.get_plan(rt, plan.id)
    assert final.status == "succeeded" and final.paused_reason is None
    audit = [e.body["kind"] for e in await asyncio.to_thread(rt.audit.query, plan_id=plan.id, limit=20)]
    assert {"pause", "resume", "run"} <= set(audit)


async def _all_available(rt: Runtime, *hosts: str) -> bool:
    found = await states(rt, *hosts)
    return all(s["status"] == "available" and s["heartbeat"] for s in found.values())


async def test_a_killed_daemon_is_offline_after_its_ttl(rt: Runtime, daemons: dict[str, Hostd],
                                                        cli_env: dict[str, str]) -> None:
    await wait_for(lambda: _all_available(rt, "ai", "desktop"))
    killed_at = time.monotonic()
    daemons["desktop"].stop()  # SIGKILL: no clean shutdown, the key must expire on its own

    async def offline() -> bool:
        return (await states(rt, "desktop"))["desktop"]["status"] == "offline"

    await wait_for(offline, timeout_s=TTL_S + 10)
    assert time.monotonic() - killed_at >= TTL_S - 0.6  # not before its TTL (less one heartbeat period)
    listed = json.loads(chiffon(cli_env, "host", "list", "--json").stdout)
    assert listed["desktop"]["status"] == "offline" and listed["desktop"]["reason"] == "no heartbeat within its TTL"
    assert listed["ai"]["status"] == "available"  # the other daemon is unaffected


async def test_capacity_and_metrics_answer_from_the_replayed_recording(daemons: dict[str, Hostd]) -> None:
    url = daemons["desktop"].url
    async with httpx.AsyncClient() as client:
        small = (await client.get(f"{url}/capacity", params={"model": "qwen2.5-1.5b"})).json()
        large = (await client.get(f"{url}/capacity", params={"model": "qwen2.5-7b"})).json()
        unknown = await client.get(f"{url}/capacity", params={"model": "llama-70b"})
        bad = await client.get(f"{url}/capacity", params={"need_mb": "lots"})
        metrics = (await client.get(f"{url}/metrics")).text
    gpu = small["snapshot"]["gpus"][0]
    assert gpu["name"] == "Radeon RX 550 / 550 Series" and gpu["vram_total_mb"] == 4096
    assert small["snapshot"]["gpu_reader"] == "replay:amd"
    assert large["fits"] is False and "needs 5200 MB" in large["reason"]  # a 7B model never fits a 4 GB card
    assert small["need_mb"] == 1800 and small["budget_mb"] == 3686  # 90% of 4096
    assert unknown.status_code == 400 and "qwen2.5-1.5b" in unknown.json()["error"]["message"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "need_mb"
    assert 'chiffon_gpu_vram_total_bytes{gpu="0",host="desktop",name="Radeon RX 550 / 550 Series"} 4.294967296e+09' \
        in metrics
    assert 'chiffon_host_online{host="desktop"} 1.0' in metrics


def test_host_commands_refuse_an_unknown_host(cli_env: dict[str, str]) -> None:
    for verb in ("busy", "free"):
        proc = chiffon(cli_env, "host", verb, "nowhere")
        assert proc.returncode == 2
        assert "'nowhere' is not a configured host; hosts: ai, desktop, east" in proc.stderr
