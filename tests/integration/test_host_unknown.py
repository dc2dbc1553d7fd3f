"""A host that never sent a heartbeat reads ``unknown``, not ``available``, on every surface (the state itself,
the CLI, the console's Hosts page), while work for it still goes ahead under ``hostd.assume_available``."""

from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
import sys
from pathlib import Path

from chiffon.orchestrator.console import actions
from chiffon.servers.ansible import attempt, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.config import HostConfig
from chiffon.shared.hosts import SEEN_KEY, USABLE, HostStatus, host_states, publish_heartbeat
from chiffon.shared.runtime import Runtime

BIN = Path(sys.executable).parent


async def test_a_host_that_never_reported_is_unknown_not_available(rt: Runtime) -> None:
    silent, beating = f"silent-{secrets.token_hex(3)}", f"beating-{secrets.token_hex(3)}"
    await publish_heartbeat(rt.bus, beating, json.dumps({"status": "available"}), ttl_ms=30_000)
    states = await host_states(rt.bus, [silent, beating], assume_available=True)
    assert states[silent]["status"] == "unknown" and "never sent a heartbeat" in states[silent]["reason"]
    assert states[beating]["status"] == "available"
    strict = await host_states(rt.bus, [silent], assume_available=False)
    assert strict[silent]["status"] == "offline"  # without the assumption it cannot take work
    assert HostStatus(rt.bus, assume_available=True).cached(silent) == "unknown"
    assert "unknown" in USABLE and "offline" not in USABLE


async def test_work_for_an_unknown_host_goes_ahead_and_an_offline_one_waits(rt: Runtime, repo: Path) -> None:
    svc = AnsibleService(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "x"})
    silent, gone = f"silent-{secrets.token_hex(3)}", f"gone-{secrets.token_hex(3)}"
    await rt.bus.remember(SEEN_KEY, gone)  # it sent heartbeats once; none is current
    hosts = {**rt.settings.hosts, silent: HostConfig(address="127.0.0.1"), gone: HostConfig(address="127.0.0.1")}
    here = dataclasses.replace(rt, settings=rt.settings.model_copy(update={"hosts": hosts}))
    on = plan.model_copy(update={"hosts": [silent, gone]})
    blocked = await attempt.blocked_hosts(here, on)
    assert list(blocked) == [gone] and blocked[gone]["status"] == "offline"


async def test_the_console_and_the_cli_say_unknown(rt: Runtime, cli_env: dict[str, str]) -> None:
    rows = {r[0]: r for r in await actions.host_rows(rt)}
    states = await host_states(rt.bus, sorted(rows), rt.settings.hostd.assume_available)
    never = [h for h, s in states.items() if s["heartbeat"] is None and s["status"] not in ("busy", "offline")]
    assert never, "every configured host has reported in this session"
    for host in never:
        assert rows[host][1] == "unknown" and rows[host][3:] == ["", "", ""]
    proc = subprocess.run([str(BIN / "chiffon"), "host", "list", "--json"], env=cli_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert all(listed[h]["status"] == "unknown" for h in never if h in listed)
    proc = subprocess.run([str(BIN / "chiffon"), "host", "list"], env=cli_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "unknown" in proc.stdout
