"""The lab's backing servers: Debian's PostgreSQL 15 inside ``ai`` and Debian's Redis inside ``east``, as a real
install runs them (docs/operator.md, section 1): reached by URL over the lab's bridge, with passwords.

* PostgreSQL: ``initdb`` (as the ``postgres`` system user) into ``/opt/postgresql/data`` on ``ai`` (the host's own
  ``/opt``, so under ``<lab dir>/hosts/ai/opt/postgresql`` on this machine), listening on ai's address port 5432
  and on a unix socket in ``/opt/postgresql/run`` (never the machine's ``/var/run/postgresql``), SCRAM password
  authentication for the ``chiffon`` role from the lab's /24; the role owns the ``chiffon`` database.
* Redis: ``redis-server`` (as the ``redis`` system user) with its own config in ``/opt/redis`` on ``east``, bound to
  east's address port 6379, ``requirepass``, an append-only file synced every second (what deploy/compose.yaml
  gives the homelab's Redis) and no RDB snapshots.

Each server runs in its own process group (:meth:`LabHost.popen`); :meth:`LabServices.kill_redis` and friends
SIGKILL it, :meth:`LabServices.start_redis` starts it again from the same files. The session fixture
:func:`tests.lab.conftest.lab_services` starts both once per session (skips where the lab or the Debian packages
are missing) and stops them.

:class:`Spread` runs chiffon's own parts over them, each inside its lab host, from this checkout's virtual
environment (the hosts share this machine's files but for their own ``/home``, ``/opt`` and ``/etc/sudoers.d``), as
the deploy kit's units would:

* ``ai``: the orchestrator, ``chiffon serve --transport http`` on ai's address, port 8765, with a bearer token
  (``CHIFFON_HTTP__BEARER_TOKEN``, as ``chiffon deploy systemd --env-file`` writes it), and the CLI;
* ``east`` and ``desktop-linux``: ``chiffon worker --roles infra`` and ``chiffon hostd`` bound to the host's
  address with ``CHIFFON_HOSTD__TOKEN``;
* PostgreSQL on ``ai`` and Redis on ``east`` (above), reached by URL from every host.

Every host has its own ``CHIFFON_HOME`` in its own ``/opt/chiffon/home`` (the kit's ``/var/lib/chiffon``, which is
not private in the lab), ``CHIFFON_HOST`` set to its name and ``worker_in_process: false`` (the orchestrator and the
CLI queue runs; the workers run them).

No folder is shared between the hosts' homes: a worker on ``east`` lays out a plan's snapshot from
PostgreSQL (servers/ansible/snapshot_store.py), and keeps its own run folders and audit repo.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from chiffon.shared.resources import example_repo
from tests.conftest import git_commit_all
from tests.lab.lab import Lab, LabHost, _wait_port, host_umask

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = Path("/usr/bin/redis-server")
PG_HOST = "ai"
REDIS_HOST = "east"
PG_PORT = 5432
REDIS_PORT = 6379
PG_DIR = "/opt/postgresql"  # on ai
REDIS_DIR = "/opt/redis"  # on east


def missing_packages() -> str | None:
    """Why the lab's servers cannot start here (a Debian package or system user absent), or None."""
    for path, package in ((PG_BIN / "postgres", "postgresql-15"), (REDIS_SERVER, "redis-server")):
        if not path.exists():
            return f"the lab's servers need {path} (Debian: apt-get install {package})"
    for user in ("postgres", "redis"):
        if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
            return f"no {user} system user (Debian's package creates it)"
    if shutil.which("runuser") is None:
        return "the lab's servers need runuser (util-linux)"
    return None


def _owned_by(path: Path, user: str, mode: int = 0o700) -> None:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, user, user)
    path.chmod(mode)


@dataclass
class LabServices:
    """PostgreSQL on ``ai`` and Redis on ``east`` of ``lab``: their passwords, URLs and processes."""

    lab: Lab
    pg_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    postgres: subprocess.Popen[bytes] | None = None
    redis: subprocess.Popen[bytes] | None = None

    @property
    def pg_host(self) -> LabHost:
        return self.lab[PG_HOST]

    @property
    def redis_host(self) -> LabHost:
        return self.lab[REDIS_HOST]

    @property
    def database_url(self) -> str:
        """``postgresql://chiffon:PW@<ai address>:5432/chiffon`` (CHIFFON_DATABASE_URL)."""
        return f"postgresql://chiffon:{self.pg_password}@{self.pg_host.address}:{PG_PORT}/chiffon"

    @property
    def redis_url(self) -> str:
        """``redis://:PW@<east address>:6379/0`` (CHIFFON_REDIS_URL)."""
        return f"redis://:{self.redis_password}@{self.redis_host.address}:{REDIS_PORT}/0"

    # ---- PostgreSQL

    def init_postgres(self) -> None:
        """initdb as ``postgres`` on ai, listening on ai's address with SCRAM for the lab's subnet; start it; make
        the ``chiffon`` role (with its password) and database."""
        root = self.pg_host.path(PG_DIR)
        _owned_by(root, "postgres", 0o755)
        _owned_by(root / "run", "postgres", 0o755)
        pwfile = root / "superuser.pw"
        pwfile.write_text(secrets.token_urlsafe(18) + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        self.pg_host.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", f"{PG_DIR}/data",
                          "--username=postgres", f"--pwfile={PG_DIR}/superuser.pw", "--auth-local=peer",
                          "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"], timeout=120)
        data = root / "data"
        with (data / "pg_hba.conf").open("a") as f:
            f.write(f"host chiffon chiffon {self.lab.subnet}.0/24 scram-sha-256\n")
        with (data / "postgresql.conf").open("a") as f:
            f.write(f"\n# chiffon lab\nlisten_addresses = '{self.pg_host.address}'\nport = {PG_PORT}\n"
                    f"unix_socket_directories = '{PG_DIR}/run'\npassword_encryption = 'scram-sha-256'\n"
                    "max_connections = 200\nshared_buffers = 32MB\nfsync = off\nsynchronous_commit = off\n"
                    "full_page_writes = off\n")
        self.start_postgres()
        sql = (f"CREATE ROLE chiffon LOGIN PASSWORD '{self.pg_password}';"
               "CREATE DATABASE chiffon OWNER chiffon;")
        for statement in sql.split(";")[:-1]:
            self.pg_host.run(["runuser", "-u", "postgres", "--", "/usr/bin/psql", "-h", f"{PG_DIR}/run",
                              "-p", str(PG_PORT), "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", statement])

    def start_postgres(self) -> None:
        """Start the cluster (again) and wait until ai's port 5432 answers."""
        log = (self.pg_host.path(PG_DIR) / "postgres.log").open("ab")
        self.postgres = self.pg_host.popen(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", f"{PG_DIR}/data"],
            stdout=log, stderr=log)
        _wait_port(self.pg_host.address, PG_PORT, what="PostgreSQL on ai", proc=self.postgres, timeout_s=60)

    def kill_postgres(self) -> None:
        """SIGKILL PostgreSQL (the postmaster and its backends)."""
        _kill_group(self.postgres)
        self.postgres = None

    # ---- Redis

    def init_redis(self) -> None:
        """Write east's redis.conf (bind east's address, requirepass, AOF everysec, no RDB) and start it."""
        root = self.redis_host.path(REDIS_DIR)
        _owned_by(root, "redis", 0o750)
        conf = root / "redis.conf"
        conf.write_text(f"bind {self.redis_host.address}\nport {REDIS_PORT}\nprotected-mode yes\n"
                        f"requirepass {self.redis_password}\ndir {REDIS_DIR}\nsave \"\"\nappendonly yes\n"
                        "appendfsync everysec\ndaemonize no\nlogfile \"\"\nmaxmemory 512mb\n"
                        "maxmemory-policy noeviction\n")
        shutil.chown(conf, "redis", "redis")
        conf.chmod(0o600)
        self.start_redis()

    def start_redis(self) -> None:
        """Start redis-server (again, from its append-only file) and wait until east's port 6379 answers."""
        log = (self.redis_host.path(REDIS_DIR) / "redis.log").open("ab")
        self.redis = self.redis_host.popen(
            ["runuser", "-u", "redis", "--", str(REDIS_SERVER), f"{REDIS_DIR}/redis.conf"], stdout=log, stderr=log)
        _wait_port(self.redis_host.address, REDIS_PORT, what="Redis on east", proc=self.redis, timeout_s=30)

    def kill_redis(self) -> None:
        """SIGKILL redis-server."""
        _kill_group(self.redis)
        self.redis = None

    # ---- both

    def start(self) -> LabServices:
        """Initialise and start both servers; on failure stop what started and raise."""
        try:
            with host_umask():  # the servers' users read what is written here for them
                self.init_postgres()
                self.init_redis()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        for proc in (self.redis, self.postgres):
            _stop_group(proc)
        self.redis = self.postgres = None


def _kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def _stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
    except ProcessLookupError:
        pass


# ---- chiffon spread across the hosts

CHIFFON = str(Path(sys.executable).parent / "chiffon")
HOME = "/opt/chiffon/home"  # CHIFFON_HOME inside every host (its own /opt)
API_PORT = 8765
HOSTD_PORT = 8770
KUMA_REQUEST = "Deploy Uptime Kuma and add the existing portals to its config"
DESKTOP_REQUEST = "Leave the lab note on the desktop"
SLOW_REQUEST = "Run the slow count on east"

DESKTOP_NOTE = """# A note on the desktop (tests/lab/spread.py): targets desktop-linux only.
- name: Leave the lab note on the desktop
  hosts: desktop
  gather_facts: false
  tasks:
    - name: Write the lab note
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/lab-note.txt"
        content: "left by chiffon\\n"
        mode: "0644"
"""

SLOW_COUNT = """# A slow count on east (tests/lab/spread.py): sleeps, then appends one line per application.
- name: Run the slow count on east
  hosts: east
  gather_facts: false
  tasks:
    - name: Take a while
      ansible.builtin.command: sleep {{ slow_seconds | default(8) }}
      changed_when: false
    - name: Count this run
      ansible.builtin.lineinfile:
        path: "{{ homelab_root }}/slow-count.txt"
        line: "ran {{ lookup('pipe', 'date +%s%N') }}"
        create: true
        mode: "0644"
"""


def make_repo(lab: Lab, dest: Path) -> Path:
    """A git copy of the example repo with ``inventories/lab.ini`` and the two lab playbooks."""
    shutil.copytree(example_repo(), dest)
    (dest / "inventories" / "lab.ini").write_text(lab.inventory())
    (dest / "lab-note.yml").write_text(DESKTOP_NOTE)
    (dest / "slow-count.yml").write_text(SLOW_COUNT)
    git_commit_all(dest)
    return dest


@dataclass
class Spread:
    """chiffon's parts in the lab's hosts: their environment, config, processes and logs."""

    lab: Lab
    services: LabServices
    repo: Path
    logs: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    hostd_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.lab.directory / "chiffon-lab.yaml"

    @property
    def api(self) -> str:
        return f"http://{self.lab['ai'].address}:{API_PORT}"

    def home(self, host: str) -> Path:
        """Where ``host``'s CHIFFON_HOME is on this machine."""
        return self.lab[host].path(HOME)

    def write_config(self) -> None:
        """The one config every host reads (``CHIFFON_CONFIG``): the lab's hosts, what runs where, short beats."""
        hosts = {"ai": ["orchestrator"], "east": ["worker", "hostd"], "desktop-linux": ["worker", "hostd"]}
        self.config.write_text(yaml.safe_dump({
            "worker_in_process": False,
            "hosts": {h: {"address": self.lab[h].address, "chiffon": parts} for h, parts in hosts.items()},
            "hostd": {"port": HOSTD_PORT, "heartbeat_s": 1.0, "heartbeat_ttl_s": 5.0},
            "tasks": {"reclaim_idle_s": 3},
            "http": {"port": API_PORT},
        }))

    def prepare(self) -> None:
        """Write the config, make the logs folder and each host's CHIFFON_HOME (nothing shared between them)."""
        self.write_config()
        self.logs.mkdir(parents=True, exist_ok=True)
        for host in self.lab.hosts:
            self.home(host).mkdir(parents=True, exist_ok=True)

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """What a unit of ``host`` gets from the kit's env file and its own ``Environment=`` lines."""
        keep = {k: v for k, v in os.environ.items()
                if k in ("PATH", "LANG", "LC_ALL", "TERM", "TZ", "XDG_CONFIG_HOME", "CHIFFON_SYSTEM_CONFIG")}
        env = {**keep, "PATH": f"{Path(CHIFFON).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": "/root", "CHIFFON_HOME": HOME, "CHIFFON_HOST": host, "CHIFFON_CONFIG": str(self.config),
               "CHIFFON_DATABASE_URL": self.services.database_url, "CHIFFON_REDIS_URL": self.services.redis_url,
               "CHIFFON_HTTP__BEARER_TOKEN": self.token, "CHIFFON_HOSTD__TOKEN": self.hostd_token,
               "CHIFFON_REPO": str(self.repo), "CHIFFON_EMBEDDED__IDLE_STOP_S": "0",
               "CHIFFON_LLM__PACKAGED_DEFAULT": "off", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1",
               "ANSIBLE_HOST_KEY_CHECKING": "True"}
        env.setdefault("XDG_CONFIG_HOME", str(self.lab.directory / "no-xdg"))
        env.setdefault("CHIFFON_SYSTEM_CONFIG", str(self.lab.directory / "no-etc" / "chiffon.yaml"))
        return {**env, **extra}

    # ---- one-off commands

    def chiffon(self, host: str, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
        """``chiffon ARGS`` inside ``host`` (no terminal); a hang is killed with its stacks in the error."""
        proc = self.lab[host].popen([CHIFFON, *args], env=self.env(host, **extra), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            raise AssertionError(f"chiffon {' '.join(args)} on {host} hung for {timeout} s:\n{err[-6000:]}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def plan(self, request: str, *extra: str) -> str:
        """Plan ``request`` with the CLI on ai (check mode over SSH); the pending plan's id."""
        made = self.chiffon("ai", "run", request, "--repo", str(self.repo), "--inventory", "lab", "--json", *extra)
        assert made.returncode == 3, made.stdout[-2000:] + made.stderr[-4000:]
        return str(json.loads(made.stdout)["plan_id"])

    def approve(self, plan_id: str) -> None:
        done = self.chiffon("ai", "approve", plan_id, "--reason", "lab test", "--yes")
        assert done.returncode == 0, done.stderr[-3000:]

    # ---- long-running parts

    def start(self, name: str, host: str, args: list[str], ready: Callable[[str], bool], timeout_s: float = 180,
              **extra: str) -> subprocess.Popen[bytes]:
        """Start ``chiffon ARGS`` inside ``host`` as part ``name`` (log in ``logs/<name>.log``), wait for
        ``ready(log text)``; fails with the log when it exits first."""
        self.stop(name)
        log = self.logs / f"{name}.log"
        with log.open("ab") as f:
            proc = self.lab[host].popen([CHIFFON, *args], env=self.env(host, **extra), stdin=subprocess.DEVNULL,
                                        stdout=f, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        deadline = time.monotonic() + timeout_s
        while not ready(log.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-5000:]
                self.stop(name)
                raise AssertionError(f"{name} on {host} did not start:\n{text}")
            time.sleep(0.2)
        return proc

    def start_worker(self, host: str) -> subprocess.Popen[bytes]:
        return self.start(f"worker-{host}", host, ["worker", "--roles", "infra"],
                          lambda text: ": running approved plans" in text)

    def start_hostd(self, host: str) -> subprocess.Popen[bytes]:
        address = self.lab[host].address
        return self.start(f"hostd-{host}", host, ["hostd", "--host", host, "--bind", address],
                          lambda _: _answers(f"http://{address}:{HOSTD_PORT}/health"))

    def start_orchestrator(self) -> subprocess.Popen[bytes]:
        return self.start("orchestrator", "ai", ["serve", "--transport", "http", "--host", self.lab["ai"].address,
                                                 "--port", str(API_PORT), "--repo", str(self.repo)],
                          lambda _: _answers(f"{self.api}/health"))

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        """SIGKILL part ``name`` (only its main process: what it started, Ansible among them, goes on)."""
        proc = self.procs.pop(name)
        with _gone():
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str) -> None:
        """Stop part ``name`` and its process group: SIGTERM, SIGKILL after 20 s."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with _gone():
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        with _gone():
            os.killpg(proc.pid, signal.SIGKILL)
        with _gone():
            proc.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # ---- PostgreSQL, read as the operator would

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        import asyncpg

        async def go() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.services.database_url, timeout=10)
            try:
                return [dict(r) for r in await conn.fetch(sql, *args)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def plan_row(self, plan_id: str) -> dict[str, Any]:
        row = self.query("SELECT status, paused_reason, hosts FROM plans WHERE id=$1", plan_id)[0]
        return {**row, "hosts": json.loads(row["hosts"]) if isinstance(row["hosts"], str) else row["hosts"]}

    def run_rows(self, plan_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT id, status, outcome, started_at, finished_at FROM runs WHERE plan_id=$1 "
                          "ORDER BY started_at", plan_id)

    def run_tasks(self, plan_id: str) -> list[dict[str, Any]]:
        """The queue's infra tasks of ``plan_id``: which worker took each, and how it ended."""
        return self.query("SELECT id, worker, status, error, attempts, created_at, started_at, finished_at "
                          "FROM queue_tasks WHERE kind='infra' AND inputs->>'plan_id'=$1 ORDER BY created_at",
                          plan_id)

    def wait_status(self, plan_id: str, wanted: set[str], timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.plan_row(plan_id)
            if row["status"] in wanted:
                return row
            assert time.monotonic() < deadline, f"plan {plan_id} is {row['status']}, not {wanted}, after {timeout_s} s"
            time.sleep(0.1)

    def wait_run(self, plan_id: str, timeout_s: float = 120) -> dict[str, Any]:
        """The run of ``plan_id`` once it started (a row in ``runs``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.run_rows(plan_id)
            if rows:
                return rows[-1]
            assert time.monotonic() < deadline, f"plan {plan_id} did not start running in {timeout_s} s"
            time.sleep(0.05)

    def follow(self, host: str, *args: str, **extra: str) -> subprocess.Popen[str]:
        """``chiffon ARGS`` inside ``host`` in the background (a client that waits on a run); the caller ends it."""
        return self.lab[host].popen([CHIFFON, *args], env=self.env(host, **extra),  # type: ignore[return-value]
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)

    def owner(self, host: str, run_id: str) -> dict[str, Any]:
        """The run's ``owner.json`` in ``host``'s CHIFFON_HOME (which process ran it, on which host)."""
        return dict(json.loads((self.home(host) / "runs" / run_id / "owner.json").read_text()))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class _gone:
    """Ignore a process that is already gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, (ProcessLookupError, ChildProcessError))
