"""The CLI's reads open what they need themselves, and no more: `chiffon status` in a home where nothing runs,
the embedded PostgreSQL found again from its postmaster.pid, and a bus that connects only when used.

Speed is measured by ``benchmarks/console.py --only startup`` (``cli_status_vs_help``), never here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chiffon.shared.bus import embedded_socket
from chiffon.shared.config import load_settings
from chiffon.shared.runtime import BusOnDemand, open_runtime, stop_embedded
from chiffon.shared.store import running_embedded_url

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def chiffon(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHIFFON, *args], env={**os.environ, "CHIFFON_HOME": str(home)}, capture_output=True,
                          text=True, timeout=300)


def postmaster_pid(home: Path) -> int:
    return int((home / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def test_status_in_a_home_where_nothing_runs_starts_the_store_itself(tmp_path: Path) -> None:
    done = chiffon(tmp_path, "status", "plan-that-is-not-there")
    assert done.returncode == 2, done.stderr
    assert "no plan 'plan-that-is-not-there'" in done.stderr  # the store answered: it was started and migrated
    assert running_embedded_url(tmp_path / "postgres") is not None


def test_status_does_not_start_redis_when_nothing_is_published(tmp_path: Path) -> None:
    assert chiffon(tmp_path, "status", "nope").returncode == 2
    assert not embedded_socket(tmp_path).exists()


def test_a_second_status_reuses_the_running_postgres(tmp_path: Path) -> None:
    chiffon(tmp_path, "status", "nope")
    first = postmaster_pid(tmp_path)
    done = chiffon(tmp_path, "status", "nope")
    assert done.returncode == 2 and "no plan 'nope'" in done.stderr
    assert postmaster_pid(tmp_path) == first


def test_a_stale_postmaster_pid_is_not_taken_for_a_running_server(tmp_path: Path) -> None:
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (pgdata / "postmaster.pid").write_text(f"{dead.pid}\n{pgdata}\n1\n5432\n{pgdata}\n\n0 0\nready   \n")
    assert running_embedded_url(pgdata) is None


def test_a_postmaster_still_starting_is_not_connected_to(tmp_path: Path) -> None:
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n1\n5432\n{pgdata}\n\n0 0\nstarting\n")
    assert running_embedded_url(pgdata) is None


def test_a_ready_postmaster_gives_its_socket_url(tmp_path: Path) -> None:
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n1\n5432\n{pgdata}\n\n0 0\nready   \n")
    assert running_embedded_url(pgdata) == f"postgresql://postgres:@/postgres?host={pgdata}"


def test_a_postmaster_pid_left_by_a_crash_does_not_stop_status(tmp_path: Path) -> None:
    chiffon(tmp_path, "status", "nope")
    real = postmaster_pid(tmp_path)
    left = (tmp_path / "postgres" / "postmaster.pid").read_text().splitlines()  # what a crash leaves behind
    assert chiffon(tmp_path, "down").returncode == 0
    for _ in range(600):  # the real postmaster is gone before a stale file is planted (slow under load)
        if not psutil.pid_exists(real):
            break
        time.sleep(0.1)
    pgdata = tmp_path / "postgres"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (pgdata / "postmaster.pid").write_text("\n".join([str(dead.pid), *left[1:]]) + "\n")
    # owned as the server left it (its user, 0600): written by this process (root, umask 077 after an earlier test's
    # runtime), the server's own user could not read it, which no crash leaves behind
    os.chown(pgdata / "postmaster.pid", pgdata.stat().st_uid, pgdata.stat().st_gid)
    (pgdata / "postmaster.pid").chmod(0o600)
    done = chiffon(tmp_path, "status", "nope")
    assert done.returncode == 2 and "no plan 'nope'" in done.stderr, done.stderr
    assert postmaster_pid(tmp_path) != dead.pid


async def test_a_bus_on_demand_connects_on_its_first_publish(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    try:
        async with open_runtime(settings, bus_on_demand=True) as rt:
            assert isinstance(rt.bus, BusOnDemand) and not rt.bus.connected
            assert not embedded_socket(tmp_path).exists()
            entry = await rt.bus.publish("chiffon:test-on-demand", {"said": "hello"})
            assert rt.bus.connected
            assert [m.data for m in await rt.bus.recent("chiffon:test-on-demand")] == [{"said": "hello"}]
            assert entry
    finally:
        await stop_embedded(settings)


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does the embedded server run as a user of its own")
def test_a_start_that_fails_says_why_in_pg_ctls_words(tmp_path: Path) -> None:
    chiffon(tmp_path, "status", "nope")
    pid_file = tmp_path / "postgres" / "postmaster.pid"
    left = pid_file.read_text().splitlines()
    assert chiffon(tmp_path, "down").returncode == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file.write_text("\n".join([str(dead.pid), *left[1:]]) + "\n")  # root's, 0600: the server's user cannot read it
    pid_file.chmod(0o600)
    done = chiffon(tmp_path, "status", "nope")
    assert done.returncode == 2
    assert "pg_ctl said: pg_ctl: could not open PID file" in done.stderr and "Permission denied" in done.stderr
    assert "CHIFFON_DATABASE_URL" in done.stderr
