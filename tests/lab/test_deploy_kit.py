"""The deploy kit meets hosts that are not this machine: deploy/ansible/install-chiffon.yml over SSH onto the lab.

The lab hosts reach no package index, so the kit installs from a wheelhouse built here (deploy/wheelhouse.sh:
chiffon's wheel and the wheels uv.lock pins), copied to each host and installed offline into a venv of the host's
own python3 (Debian's /usr/bin/python3). The playbook runs as an operator runs it: over SSH with host key checking
on (the keys trusted first, ``trusted_lab``), ``--ask-become-pass`` answered at its prompt for ``ai``, whose sudo
asks.

Where the lab differs from a real host, the kit's settings move what it writes into each host's own folders:
``/var/lib/chiffon``, ``/etc/chiffon`` and ``/etc/systemd/system`` are this machine's in the lab (only ``/home``,
``/opt`` and ``/etc/sudoers.d`` are private), and a ``chiffon`` system user would land in this machine's
``/etc/passwd``; so CHIFFON_HOME is ``/opt/chiffon-state``, the env file is in ``/opt/chiffon-etc``, the units
are written to ``/opt/chiffon-units`` and the services run as the lab user. ``/opt/chiffon`` (the venv) is the
kit's default. The lab has no systemd: a test starts the command line the installed unit names (ExecStart, User,
WorkingDirectory, Environment and EnvironmentFile read from the unit file), as systemd would.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CHECKOUT
from tests.lab.lab import HOSTS, Lab
from tests.lab.services import LabServices

BIN = Path(sys.executable).parent
PLAYBOOK = CHECKOUT / "deploy" / "ansible" / "install-chiffon.yml"
WHEELHOUSE = CHECKOUT / "deploy" / "wheelhouse.sh"
VENV = "/opt/chiffon/.venv"
#: the kit's settings for the lab (see the module docstring for why each differs from the default)
STATE, ETC, UNITS = "/opt/chiffon-state", "/opt/chiffon-etc", "/opt/chiffon-units"
LAB_VARS = {"chiffon_manage_user": False, "chiffon_home": STATE, "chiffon_etc": ETC, "chiffon_units_dir": UNITS}
#: what the kit made on each host, removed after this module (the venv alone is about 830 MB)
MADE = ("/opt/chiffon/.venv", "/opt/chiffon/wheelhouse", "/opt/chiffon-state", "/opt/chiffon-etc", "/opt/chiffon-units")
#: the chiffon services of each lab host: the config's hosts.<name>.chiffon (deploy/config/chiffon.yaml)
SERVICES = {"ai": {"orchestrator", "worker", "hostd"}, "east": {"hostd"}, "desktop-linux": {"hostd"}}


@dataclass
class Deploy:
    """The kit's run against the lab: how to run it again, and the first run's output."""

    lab: Lab
    inventory: Path
    wheelhouse: Path
    vars_file: Path
    first: subprocess.CompletedProcess[str]
    first_s: float

    def play(self, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``ansible-playbook -i lab.ini install-chiffon.yml --ask-become-pass -e chiffon_wheelhouse=... -e @vars``,
        typing the lab user's sudo password at the BECOME prompt (asked once; only ai's sudo needs it)."""
        return play(self.lab, self.inventory, self.wheelhouse, self.vars_file, *extra, timeout=timeout)


def play(lab: Lab, inventory: Path, wheelhouse: Path, vars_file: Path, *extra: str,
         timeout: float = 900) -> subprocess.CompletedProcess[str]:
    import pexpect  # type: ignore[import-untyped]

    argv = ["-i", str(inventory), str(PLAYBOOK), "--ask-become-pass", "-e", f"chiffon_wheelhouse={wheelhouse}",
            "-e", f"@{vars_file}", *extra]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    child = pexpect.spawn(str(BIN / "ansible-playbook"), argv, env=env, encoding="utf-8", timeout=timeout,
                          dimensions=(50, 200))
    child.expect("BECOME password: ")
    child.sendline(lab.sudo_password)
    child.expect(pexpect.EOF)
    child.close()
    return subprocess.CompletedProcess(argv, child.exitstatus or 0, child.before, "")


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counters per host: ``{"east": {"ok": 12, "changed": 4, "failed": 0, ...}}``."""
    found = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output.split("PLAY RECAP")[-1], re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return found


#: what pip says when no index answers (no network, no mirror): the wheelhouse cannot be built here
NO_INDEX = ("No matching distribution found", "Could not find a version that satisfies", "NewConnectionError",
            "Network is unreachable", "Temporary failure in name resolution", "Max retries exceeded")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/wheelhouse.sh into a temporary folder: chiffon's wheel (this working tree) and the locked wheels
    (from PyPI, which this machine reaches and the lab hosts do not; pip's cache makes a second build quick)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    built = subprocess.run([str(WHEELHOUSE), str(out)], capture_output=True, text=True, timeout=900,
                           env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    noise = "\n".join(line for line in built.stderr.splitlines() if "is ignored: it is neither" not in line)
    if built.returncode != 0 and any(sign in noise for sign in NO_INDEX):  # a machine with no package index
        pytest.skip(f"deploy/wheelhouse.sh found no package index to download the locked wheels from: "
                    f"{noise.strip().splitlines()[-1][:300]}")
    assert built.returncode == 0, built.stdout + noise[-3000:]
    assert built.stdout.strip() == str(out / "wheelhouse.tar")
    return out / "wheelhouse.tar"


@pytest.fixture(scope="module")
def deployed(lab: Lab, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    """The install playbook, run once over SSH onto all three lab hosts (host keys trusted first, as after checking
    the fingerprints); what it made is removed afterwards."""
    folder = tmp_path_factory.mktemp("deploy")
    inventory = folder / "lab.ini"
    # the lab calls the desktop desktop-linux; the config's host is `desktop`
    inventory.write_text(lab.inventory(extra="\n[desktop]\ndesktop-linux chiffon_host=desktop\n"))
    vars_file = folder / "lab-vars.json"
    vars_file.write_text(json.dumps({**LAB_VARS, "chiffon_user": lab.user}))
    lab.trust()
    started = time.monotonic()
    try:
        first = play(lab, inventory, wheelhouse, vars_file)
        yield Deploy(lab, inventory, wheelhouse, vars_file, first, time.monotonic() - started)
    finally:
        for host in lab.hosts.values():
            for path in MADE:
                shutil.rmtree(host.path(path), ignore_errors=True)


def unit(lab: Lab, host: str, service: str) -> dict[str, list[str]]:
    """The installed unit file of ``service`` on ``host``, as ``{key: [values]}`` (keys may repeat)."""
    text = lab[host].path(f"{UNITS}/chiffon-{service}.service").read_text()
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def env_file(lab: Lab, host: str, path: str) -> dict[str, str]:
    """KEY=value lines of an env file on ``host`` (comments skipped), as systemd's EnvironmentFile reads them."""
    lines = lab[host].path(path).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


def start_unit(lab: Lab, host: str, service: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``service`` on ``host`` as systemd would start its unit: ExecStart as User, in WorkingDirectory, with
    the unit's Environment= lines over its EnvironmentFile's (and nothing of this process's environment)."""
    keys = unit(lab, host, service)
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for entry in keys.get("EnvironmentFile", []):
        path = entry.removeprefix("-")
        if lab[host].path(path).exists():
            environment |= env_file(lab, host, path)
    environment |= dict(value.split("=", 1) for value in keys.get("Environment", []))
    (user,), (workdir,), (command,) = keys["User"], keys["WorkingDirectory"], keys["ExecStart"]
    argv = ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in environment.items()),
            "sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", workdir, *command.split()]
    return lab[host].popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def http_get(lab: Lab, host: str, url: str, token: str | None = None) -> tuple[int, str]:
    """GET ``url`` from inside ``host`` (its own network namespace): ``(status, body)``; status 0 when nothing
    answered."""
    script = ("import sys, urllib.request, urllib.error\n"
              "req = urllib.request.Request(sys.argv[1])\n"
              "if len(sys.argv) > 2: req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
              "try:\n    r = urllib.request.urlopen(req, timeout=5); print(r.status); print(r.read().decode())\n"
              "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n"
              "except OSError as e:\n    print(0); print(e)\n")
    done = lab[host].run(["/usr/bin/python3", "-c", script, url, *([token] if token else [])], check=False)
    status, _, body = done.stdout.partition("\n")
    return int(status or 0), body


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)


def test_the_install_playbook_installs_chiffon_on_every_lab_host_over_ssh(deployed: Deploy) -> None:
    out = deployed.first.stdout
    assert deployed.first.returncode == 0, out[-6000:]
    counts = recap(out)
    assert set(counts) == set(HOSTS), out[-3000:]
    assert all(c["failed"] == 0 and c["unreachable"] == 0 and c["changed"] > 0 for c in counts.values()), counts
    lab = deployed.lab
    for name in HOSTS:
        host = lab[name]
        # the host's own venv, of the host's python3 (Debian's, under /usr), holds the chiffon this tree built
        where = host.run(["runuser", "-u", lab.user, "--", f"{VENV}/bin/python", "-c",
                          "import chiffon, sys; print(chiffon.__file__); print(sys.base_prefix)"])
        module, base = where.stdout.split()
        assert module.startswith(f"{VENV}/lib/python3.") and base == "/usr", where.stdout
        helped = host.run(["runuser", "-u", lab.user, "--", f"{VENV}/bin/chiffon", "--help"], timeout=120)
        assert "deploy" in helped.stdout and "hostd" in helped.stdout
        made = {p.name.removeprefix("chiffon-").removesuffix(".service")
                for p in host.path(UNITS).glob("chiffon-*.service")}
        jobs = {"backup", "purge", "drift"} if name == "ai" else set()
        assert made == SERVICES[name] | jobs, (name, made)
        secrets = host.path(f"{ETC}/chiffon.env")
        assert secrets.stat().st_mode & 0o777 == 0o600 and secrets.stat().st_uid == 0
        keys = env_file(lab, name, f"{ETC}/chiffon.env")
        assert {"CHIFFON_APPROVALS__TOTP_SECRET", "CHIFFON_HTTP__BEARER_TOKEN", "CHIFFON_HOSTD__TOKEN"} <= set(keys)
        home = host.path(STATE).stat()
        assert home.st_uid == lab.uid and home.st_mode & 0o777 == 0o750  # the services may write CHIFFON_HOME
        assert not host.path("/opt/chiffon/wheelhouse").exists()  # installed, then removed
    tokens = {env_file(lab, n, f"{ETC}/chiffon.env")["CHIFFON_HOSTD__TOKEN"] for n in HOSTS}
    assert len(tokens) == 1  # one hostd token for the homelab: the orchestrator sends it to every hostd
    assert out.count("otpauth://totp/chiffon:") == len(HOSTS)  # each host's authenticator URI, shown once
    print(f"first install onto {len(HOSTS)} hosts: {deployed.first_s:.0f} s")


def test_a_second_run_changes_nothing(deployed: Deploy, trusted_lab: Lab) -> None:
    again = deployed.play()
    assert again.returncode == 0, again.stdout[-4000:]
    counts = recap(again.stdout)
    assert set(counts) == set(HOSTS) and all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), \
        again.stdout[-4000:]
    assert "otpauth://" not in again.stdout  # a TOTP secret is never replaced, so never shown again


def test_a_wheelhouse_for_another_python_is_refused_before_anything_is_installed(deployed: Deploy,
                                                                                 trusted_lab: Lab,
                                                                                 tmp_path: Path) -> None:
    other = tmp_path / "wheelhouse-3.99.tar"
    shutil.copyfile(deployed.wheelhouse, other)
    subprocess.run(["tar", "--delete", "-f", str(other), "PYTHON_VERSION"], check=True)
    (tmp_path / "PYTHON_VERSION").write_text("3.99\n")
    subprocess.run(["tar", "-rf", str(other), "-C", str(tmp_path), "PYTHON_VERSION"], check=True)
    refused = deployed.play("-e", f"chiffon_wheelhouse={other}")
    assert refused.returncode == 2, refused.stdout[-3000:]
    refusals = re.findall(r"fatal: \[(\S+)\].*the wheelhouse holds wheels for python 3\.99, and this host's python3 "
                          r"is 3\.11", refused.stdout)
    assert sorted(refusals) == sorted(HOSTS), refused.stdout[-3000:]
    installed = hashlib.sha256(deployed.wheelhouse.read_bytes()).hexdigest()
    for name in HOSTS:  # the install stamp still names the wheelhouse the first run installed
        assert trusted_lab[name].path(f"{VENV}/.chiffon-installed").read_text() == installed


def test_hostd_started_from_its_installed_unit_answers_across_the_lab(deployed: Deploy, tmp_path: Path) -> None:
    lab = deployed.lab
    keys = unit(lab, "east", "hostd")
    # the unit reads the env file the kit keeps (chiffon_etc), not the default path
    assert keys["EnvironmentFile"] == [f"-{ETC}/chiffon.env"]
    assert keys["ExecStart"] == [f"{VENV}/bin/chiffon hostd"] and keys["User"] == [lab.user]
    token = env_file(lab, "east", f"{ETC}/chiffon.env")["CHIFFON_HOSTD__TOKEN"]
    log = tmp_path / "hostd-east.log"
    proc = start_unit(lab, "east", "hostd", log)
    try:
        url = f"http://{lab['east'].address}:8770"
        deadline = time.monotonic() + 90
        status, body = 0, ""
        while time.monotonic() < deadline and proc.poll() is None:
            status, body = http_get(lab, "ai", f"{url}/health")  # from another host, over the lab's bridge
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"hostd on east: {body}\n{log.read_text()[-3000:]}"
        assert json.loads(body)["service"]
        assert http_get(lab, "ai", f"{url}/v1/models")[0] == 401  # every route but /health needs the token
        assert http_get(lab, "ai", f"{url}/v1/models", token)[0] == 200
    finally:
        stop(proc)


def test_the_installed_chiffon_reaches_postgresql_on_ai_and_redis_on_east(deployed: Deploy, trusted_lab: Lab,
                                                                          lab_services: LabServices) -> None:
    set_urls = deployed.play("-e", json.dumps({"chiffon_env": {"CHIFFON_DATABASE_URL": lab_services.database_url,
                                                               "CHIFFON_REDIS_URL": lab_services.redis_url}}))
    assert set_urls.returncode == 0, set_urls.stdout[-4000:]
    assert lab_services.database_url not in set_urls.stdout  # no_log: the secrets file's lines are not shown
    counts = recap(set_urls.stdout)
    assert all(c["changed"] == 1 for c in counts.values()), counts  # the env lines, nothing else
    lab = deployed.lab
    secrets = env_file(lab, "desktop-linux", f"{ETC}/chiffon.env")
    keys = unit(lab, "desktop-linux", "hostd")
    environment = {**secrets, **dict(v.split("=", 1) for v in keys["Environment"])}
    done = lab["desktop-linux"].run(
        ["runuser", "-u", lab.user, "--", "env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
         *(f"{k}={v}" for k, v in environment.items()), f"{VENV}/bin/chiffon", "doctor", "--json"],
        check=False, timeout=240)
    parts = {p["service"]: p for p in json.loads(done.stdout)["parts"]}
    assert parts["postgresql"]["status"] == "ok", (parts["postgresql"], done.stderr[-2000:])
    assert parts["redis"]["status"] == "ok", (parts["redis"], done.stderr[-2000:])
    assert lab_services.pg_host.address in parts["postgresql"]["detail"]  # ai's PostgreSQL, over the bridge
    assert lab_services.redis_host.address in parts["redis"]["detail"]  # east's Redis
    assert lab_services.pg_password not in done.stdout + done.stderr
