"""A three-host lab on one machine: each host a network namespace on a private bridge, with its own sshd.

The hosts are named as the seeds name them (``ai``, ``east``, ``desktop-linux``). Each one is

- a network namespace (``ip netns``) with ``eth0`` on a bridge this lab made, its own address in a /24 nobody else on
  this machine uses, and the bridge's address as its gateway (this machine, the controller, sits at ``.1``);
- a private mount and UTS namespace anchored by one sleeping process: its own hostname, ``/etc/hosts``,
  ``/etc/sudoers.d``, ``/home`` and ``/opt``, bound from ``<lab dir>/hosts/<name>/``, so a file a playbook writes to
  ``/opt/homelab`` on ``east`` lands in ``<lab dir>/hosts/east/opt/homelab`` and nowhere on this machine's ``/opt``;
- Debian's ``sshd`` on port 22 of its address, with its own host key, accepting the lab user's key only;
- sudo for the lab user: without a password on ``east`` and ``desktop-linux``, with one on ``ai``
  (:attr:`Lab.sudo_password`), as on a host where the owner types it.

Everything else (the user in ``/etc/passwd``, the processes, the namespaces, the bridge) is removed by
:meth:`Lab.stop`, which is safe to call twice and after a half-made start. Needs root, ``ip``, ``nsenter``,
``unshare`` and Debian's ``openssh-server`` and ``sudo``; :func:`missing` says what is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOSTS = ("ai", "east", "desktop-linux")
#: the host whose sudo asks for the lab user's password
PASSWORD_HOST = "ai"
SSHD = "/usr/sbin/sshd"
#: inside each host, these folders are the host's own (bound from ``<lab dir>/hosts/<name>/<folder>``)
PRIVATE_DIRS = ("/home", "/opt", "/etc/sudoers.d")
STATE = "lab.json"
#: the umask of everything the lab makes and starts, as on a freshly booted host: whatever the test process has
#: (chiffon's runtime sets 077 process-wide), the hosts' users can read /etc/hosts, their configs and keys
HOST_UMASK = 0o022


@contextlib.contextmanager
def host_umask() -> Iterator[None]:
    """Run the block under :data:`HOST_UMASK`, then put the caller's umask back."""
    before = os.umask(HOST_UMASK)
    try:
        yield
    finally:
        os.umask(before)


def missing() -> str | None:
    """Why a lab cannot start on this machine, or None when it can (root, and every tool it runs is installed)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, a bridge, a user, bind mounts)"
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux"),
                          (SSHD, "openssh-server"), ("ssh-keygen", "openssh-client"), ("sudo", "sudo")):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (Debian: apt-get install {package})"
    probe = f"chlprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns does not work here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class LabHost:
    """One lab host: its inventory name, network namespace, address and the folder its private files live in."""

    name: str
    netns: str
    address: str
    root: Path
    #: the veth end on the bridge (on this machine's side): take it down to cut the host's link
    link: str
    #: the sleeping process that holds the host's mount and UTS namespaces open
    anchor_pid: int = 0

    def path(self, inside: str) -> Path:
        """Where a path on the host (``/opt/homelab/uptime-kuma``) is on this machine; only under the host's own
        folders (``/home``, ``/opt``, ``/etc/sudoers.d``). Raises ValueError for any other path."""
        for private in PRIVATE_DIRS:
            if inside == private or inside.startswith(private + "/"):
                return self.root / private.lstrip("/") / inside[len(private):].lstrip("/")
        raise ValueError(f"{inside} is not one of {self.name}'s own folders {PRIVATE_DIRS}")

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside this host (its network, mount and UTS namespaces)."""
        return ["nsenter", "-t", str(self.anchor_pid), "-n", "-m", "-u", "--"]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host as root; raises CalledProcessError (with stderr) when ``check`` and it fails."""
        proc = subprocess.run([*self.enter(), *argv], capture_output=True, text=True, timeout=timeout, env=env,
                              umask=HOST_UMASK)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the host as root, in its own process group (kwargs go to Popen)."""
        return subprocess.Popen([*self.enter(), *argv], start_new_session=True, umask=HOST_UMASK,  # type: ignore[call-overload, no-any-return]
                                **kwargs)

    def pids(self) -> list[int]:
        """Every process in the host's network namespace (``ip netns pids``)."""
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def sshd_pids(self) -> list[int]:
        """The host's sshd processes: the listener and one or more per open session."""
        found = []
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    found.append(pid)
            except OSError:
                continue
        return found

    def kill_sshd(self) -> None:
        """SIGKILL the host's sshd and every session it holds open: the host drops off the network for SSH."""
        for pid in self.sshd_pids():
            _kill(pid)

    def start_sshd(self) -> None:
        """Start the host's sshd (again) and wait until port 22 answers."""
        proc = self.popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                          stdout=subprocess.DEVNULL, stderr=(self.root / "sshd.log").open("ab"))
        _wait_port(self.address, 22, what=f"sshd on {self.name}", proc=proc)

    def cut(self) -> None:
        """Take the host's veth down: its address stops answering (packets are dropped, connects time out)."""
        subprocess.run(["ip", "link", "set", self.link, "down"], check=True)

    def reconnect(self) -> None:
        """Bring the host's veth back up."""
        subprocess.run(["ip", "link", "set", self.link, "up"], check=True)


@dataclass
class Lab:
    """Three hosts on a private bridge; :meth:`start` makes them, :meth:`stop` removes all of it.

    ``directory`` holds the lab's files: ``id_ed25519`` (the controller's key for the lab user), ``known_hosts``
    (empty: no host is trusted until a test or a person says so), ``hosts/<name>/`` (each host's own folders, its
    sshd config and host keys), and ``lab.json`` (what :meth:`load` reads to stop a lab started elsewhere).
    """

    directory: Path
    lab_id: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = ""
    user: str = ""
    uid: int = 0
    sudo_password: str = field(default_factory=lambda: "lab-" + secrets.token_urlsafe(12))
    hosts: dict[str, LabHost] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"chl{self.lab_id}br"

    @property
    def gateway(self) -> str:
        """This machine's address on the lab's bridge (what the hosts see the controller as)."""
        return f"{self.subnet}.1"

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def __getitem__(self, name: str) -> LabHost:
        return self.hosts[name]

    # ---- start

    def start(self) -> Lab:
        """Make the bridge, the user, the three hosts and their sshd; on any failure, undo what was made and raise."""
        why = missing()
        if why:
            raise RuntimeError(why)
        with host_umask():
            return self._start()

    def _start(self) -> Lab:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)  # sshd (as the lab user) walks through it to the host's home
        self.subnet = _free_subnet()
        self.user = f"hl{self.lab_id}"
        self._save()
        try:
            self._bridge()
            self._user()
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"chiffon-lab-{self.lab_id}",
                  "-f", str(self.key)])
            self.known_hosts.touch(mode=0o600)
            for index, name in enumerate(HOSTS, start=11):
                self._host(name, f"{self.subnet}.{index}")
                self._save()
            for host in self.hosts.values():
                host.start_sshd()
            self._save()
        except BaseException:
            self.stop()
            raise
        return self

    def _bridge(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def _user(self) -> None:
        _run(["useradd", "--no-create-home", "--home-dir", f"/home/{self.user}", "--shell", "/bin/bash",
              "--comment", f"chiffon lab {self.lab_id}", self.user])
        _run(["chpasswd"], input=f"{self.user}:{self.sudo_password}\n")
        self.uid = int(_run(["id", "-u", self.user]).stdout)

    def _host(self, name: str, address: str) -> None:
        index = len(self.hosts)
        root = self.directory / "hosts" / name
        netns = f"chl{self.lab_id}-{name}"
        host = LabHost(name=name, netns=netns, address=address, root=root, link=f"chl{self.lab_id}h{index}")
        self.hosts[name] = host
        for private in PRIVATE_DIRS:
            (root / private.lstrip("/")).mkdir(parents=True, exist_ok=True)
        home = root / "home" / self.user
        (home / ".ssh").mkdir(parents=True, exist_ok=True)
        (home / ".ssh" / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
            os.chown(path, self.uid, self.uid)
        home.chmod(0o750)
        (home / ".ssh").chmod(0o700)
        opt_homelab = root / "opt" / "homelab"  # the inventory's homelab_root, owned by the deploy user as on a real host
        opt_homelab.mkdir(exist_ok=True)
        os.chown(opt_homelab, self.uid, self.uid)
        sudoers = root / "etc" / "sudoers.d" / "chiffon-lab"
        rule = "ALL" if name == PASSWORD_HOST else "NOPASSWD: ALL"
        sudoers.write_text(f"{self.user} ALL=(ALL:ALL) {rule}\n")
        sudoers.chmod(0o440)
        (root / "hostname").write_text(name + "\n")
        (root / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
            f"{h.address} {h.name}\n" for h in self.hosts.values()) + f"{self.gateway} controller\n")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-host-key",
              "-f", str(root / "ssh_host_ed25519_key")])
        (root / "sshd_config").write_text(
            f"ListenAddress {address}:22\nHostKey {root}/ssh_host_ed25519_key\nPidFile none\n"
            f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"PermitRootLogin no\nAllowUsers {self.user}\nUsePAM yes\nStrictModes yes\n"
            f"AcceptEnv LANG LC_*\nSubsystem sftp /usr/lib/openssh/sftp-server\nMaxStartups 100\nMaxSessions 100\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory

        _run(["ip", "netns", "add", netns])
        peer = f"chl{self.lab_id}p{index}"
        _run(["ip", "link", "add", host.link, "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", netns])
        _run(["ip", "-n", netns, "link", "set", peer, "name", "eth0"])
        _run(["ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0"])
        _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        _run(["ip", "-n", netns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", netns, "route", "add", "default", "via", self.gateway])
        _run(["ip", "link", "set", host.link, "master", self.bridge, "up"])
        for other in self.hosts.values():  # earlier hosts learn this one's name
            if other is not host:
                with (other.root / "hosts").open("a") as f:
                    f.write(f"{address} {name}\n")
        binds = "".join(f"mount --bind {root}{p} {p} && " for p in PRIVATE_DIRS)
        binds += f"mount --bind {root}/hosts /etc/hosts && mount --bind {root}/hostname /etc/hostname && "
        anchor = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--propagation", "private", "--",
             "sh", "-c", f"{binds}hostname {name} && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True)
        assert anchor.stdout is not None
        if anchor.stdout.readline().strip() != "ready":
            raise RuntimeError(f"lab host {name} did not start: {anchor.communicate(timeout=5)[1]}")
        host.anchor_pid = _child_of(anchor.pid)

    # ---- use

    def inventory(self, *, extra: str = "") -> str:
        """An INI inventory for the example repo's groups on the lab hosts (SSH, host key checking on, the lab key)."""
        lines = ["# The chiffon lab: three hosts on this machine, reached over SSH (tests/lab, docs/lab.md)."]
        for group, members in (("ai", ["ai"]), ("east", ["east"]), ("desktop", ["desktop-linux"]),
                               ("monitoring", ["east"]), ("databases", ["ai"]), ("cache", ["east"])):
            lines.append(f"[{group}]")
            lines += [f"{m} ansible_host={self[m].address}" if group in ("ai", "east", "desktop") else m
                      for m in members]
            lines.append("")
        lines += ["[linux:children]", "ai", "east", "desktop", "", "[all:vars]", "ansible_connection=ssh",
                  f"ansible_user={self.user}", f"ansible_ssh_private_key_file={self.key}",
                  f"ansible_ssh_common_args=-o UserKnownHostsFile={self.known_hosts}",
                  "ansible_python_interpreter=/usr/bin/python3", "homelab_root=/opt/homelab", ""]
        return "\n".join(lines) + extra

    def trust(self, *names: str) -> None:
        """Add the host keys of ``names`` (all hosts when none) to the lab's known_hosts, read from the hosts' own
        key files: what an owner does after checking the fingerprint on the host."""
        with self.known_hosts.open("a") as f:
            for name in names or tuple(self.hosts):
                host = self[name]
                kind, key = (host.root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
                f.write(f"{host.address} {kind} {key}\n")

    def fingerprint(self, name: str) -> str:
        """``SHA256:...`` of the host's key, as ``ssh-keygen -lf`` prints it."""
        out = _run(["ssh-keygen", "-lf", str(self[name].root / "ssh_host_ed25519_key.pub")]).stdout
        return out.split()[1]

    def ssh(self, name: str, command: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on host ``name`` over SSH as the lab user (host key checked against the lab's known_hosts)."""
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=5", f"{self.user}@{self[name].address}", command],
            capture_output=True, text=True, timeout=timeout)

    # ---- stop

    def stop(self) -> None:
        """Kill every process in the lab's hosts, delete the namespaces, the bridge and the user, remove the lab's
        files. Each step goes on when an earlier one failed; safe to call on a half-made or stopped lab."""
        for host in self.hosts.values():
            for pid in [*host.pids(), host.anchor_pid]:
                _kill(pid)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True)
        for name in HOSTS:  # a start that failed before the host was recorded
            subprocess.run(["ip", "netns", "del", f"chl{self.lab_id}-{name}"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if self.user:
            for pid in _pids_of_user(self.uid):
                _kill(pid)
            subprocess.run(["userdel", self.user], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _save(self) -> None:
        state = asdict(self)
        state["directory"] = str(self.directory)
        for host in state["hosts"].values():
            host["root"] = str(host["root"])
        (self.directory / STATE).write_text(json.dumps(state, indent=2))
        (self.directory / STATE).chmod(0o600)

    @classmethod
    def load(cls, directory: Path) -> Lab:
        """The lab started in ``directory`` (by ``python -m tests.lab up``), from its ``lab.json``."""
        state = json.loads((directory / STATE).read_text())
        hosts = {name: LabHost(**{**h, "root": Path(h["root"])}) for name, h in state.pop("hosts").items()}
        return cls(**{**state, "directory": Path(state["directory"]), "hosts": hosts})


def _run(argv: list[str], *, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"lab: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _kill(pid: int) -> None:
    if pid > 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _child_of(pid: int, timeout_s: float = 10) -> int:
    """The deepest descendant of ``pid`` (ip netns exec -> unshare -> sh/sleep): the process inside the namespaces."""
    deadline = time.monotonic() + timeout_s
    current = pid
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        if not children:
            if Path(f"/proc/{current}/comm").read_text().strip() == "sleep":
                return current
            time.sleep(0.05)
            continue
        current = int(children[0])
    raise RuntimeError(f"lab: the namespace holder under pid {pid} did not appear")


def _pids_of_user(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _free_subnet() -> str:
    """A 10.237.N /24 that no interface on this machine uses (N from 1 to 254; starting from a random N, so two labs
    started at once rarely try the same one)."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    start = secrets.randbelow(254)
    for i in range(254):
        n = (start + i) % 254 + 1
        if f" 10.237.{n}." not in used:
            return f"10.237.{n}"
    raise RuntimeError("lab: no free 10.237.N.0/24 subnet on this machine")


def _wait_port(address: str, port: int, *, what: str, proc: subprocess.Popen[bytes] | None = None,
               timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"lab: {what} exited ({proc.returncode}) before listening")
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"lab: {what} is not listening on {address}:{port} after {timeout_s:.0f} s")
