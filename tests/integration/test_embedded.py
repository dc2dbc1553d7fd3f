"""Embedded servers do not pile up: an idle home stops itself, and `chiffon down --all` finds and stops them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from chiffon.shared import embedded
from chiffon.shared.config import load_settings
from chiffon.shared.errors import StoreUnavailable
from chiffon.shared.runtime import open_runtime
from chiffon.shared.store import stop_embedded as store_stop_embedded

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def _of(home: Path) -> embedded.Embedded | None:
    return next((e for e in embedded.find() if e.home == home.resolve()), None)


async def _open_and_close(home: Path) -> None:
    async with open_runtime(load_settings(home=home)) as rt:
        await rt.store.pool.fetchval("SELECT 1")


async def test_an_idle_home_stops_its_servers(tmp_path: Path) -> None:
    home = tmp_path / "idle-home"
    await _open_and_close(home)
    found = _of(home)
    assert found is not None and found.postgres_pid and found.redis_pid
    assert embedded.client_count(found) == 0  # the runtime closed its pools
    watchdog = embedded.ensure_watchdog(home.resolve(), idle_s=1.0, poll_s=0.2)
    assert watchdog is not None
    for _ in range(150):
        if _of(home) is None:
            break
        await asyncio.sleep(0.2)
    assert _of(home) is None, "the watchdog did not stop the idle servers"
    for _ in range(100):  # then the watchdog exits
        if not _alive(watchdog):
            break
        await asyncio.sleep(0.1)
    assert not _alive(watchdog) and not (home / embedded.WATCHDOG_PID).exists()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # the test process is its parent
    except psutil.NoSuchProcess:
        return False


async def test_a_home_with_a_client_stays_up(tmp_path: Path) -> None:
    home = tmp_path / "busy-home"
    async with open_runtime(load_settings(home=home)) as rt:
        entry = _of(home)
        assert entry is not None and embedded.client_count(entry) >= 2  # a PostgreSQL backend and a Redis client
        watchdog = embedded.ensure_watchdog(home.resolve(), idle_s=1.0, poll_s=0.2)
        await asyncio.sleep(3)  # three idle windows: a watchdog that ignored the clients would have stopped them
        await rt.store.pool.fetchval("SELECT 1")
        assert watchdog is not None and _alive(watchdog)
        psutil.Process(watchdog).kill()  # this test stops the servers itself
    entry = _of(home)
    assert entry is not None
    assert embedded.stop(entry) == ["postgresql", "redis"]


async def test_chiffon_down_all_lists_and_stops_every_home(tmp_path: Path) -> None:
    homes = [tmp_path / "a-home", tmp_path / "b-home"]
    for home in homes:
        await _open_and_close(home)
    # --under: the session's own servers (and a developer's real home) must survive this test
    done = subprocess.run([CHIFFON, "down", "--all", "--under", str(tmp_path), "--json"], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "CHIFFON_HOME": str(tmp_path / "unused")})
    assert done.returncode == 0, done.stderr
    listed = {Path(h["home"]): h["stopped"] for h in json.loads(done.stdout)["homes"]}
    for home in homes:
        assert listed[home.resolve()] == ["postgresql", "redis"]
        assert _of(home) is None
    assert all(Path(h).is_relative_to(tmp_path.resolve()) for h in listed)


def _plant_postmaster_pid(home: Path, pid: int) -> None:
    pgdata = home / "postgres"
    pgdata.mkdir(parents=True)
    (pgdata / "postmaster.pid").write_text(f"{pid}\n{pgdata}\n1\n5432\n{pgdata}\n\n0 0\nready   \n")


def test_a_stale_postmaster_pid_is_nothing_to_stop(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _plant_postmaster_pid(tmp_path, dead.pid)
    assert store_stop_embedded(tmp_path) is False


def test_a_postmaster_that_does_not_stop_is_an_error_not_nothing_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGCTLTIMEOUT", "3")  # pg_ctl -w gives up after 3 s instead of 60
    alive = subprocess.Popen(["sleep", "60"])
    try:
        _plant_postmaster_pid(tmp_path, alive.pid)  # pg_ctl cannot stop it (not a postmaster, or not its user's)
        with pytest.raises(StoreUnavailable, match="did not stop"):
            store_stop_embedded(tmp_path)
    finally:
        alive.kill()
        alive.wait()
