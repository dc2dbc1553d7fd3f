"""Hosts a check could not reach, and what to do about each: the unreachable ones block the plan, with the reason
in Ansible's words; an SSH host key that is unknown (or changed) is shown with its fingerprint and the exact line
that trusts it.

Host key checking stays on (:func:`servers.ansible.ansible_cfg.host_key_checking`): chiffon never passes
``StrictHostKeyChecking=no`` nor accepts a key by itself. The owner compares the fingerprint with the host's own
(``ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`` on the host, or its console) and adds the line; the line is
the key chiffon was offered, not a second scan, so what is trusted is what was shown.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chiffon.servers.ansible.events import Outcome

#: what ``ssh`` prints when the host's key is not in known_hosts (or does not match the one there)
HOST_KEY_FAILED = "Host key verification failed"
HOST_KEY_CHANGED = "REMOTE HOST IDENTIFICATION HAS CHANGED"
SCAN_TIMEOUT_S = 5
#: a host name, IPv4 or IPv6 address as ssh-keyscan is given one (never starting with "-")
ADDRESS = re.compile(r"[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]{0,252}")
#: ssh's own default known_hosts, when ``ssh -G`` cannot say
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


def unreachable(outcome: Outcome) -> dict[str, str]:
    """``{host: Ansible's message}`` for every host that a task could not reach, in the order they failed."""
    found: dict[str, str] = {}
    for event in outcome.events:
        if event.status == "unreachable" and event.host not in found:
            found[event.host] = event.message.removeprefix("Task failed: ").strip() or "unreachable"
    for host in outcome.stats.get("dark", {}):  # the recap counts a host a task result did not name
        found.setdefault(host, "unreachable")
    return found


def blocked_reason(hosts: dict[str, str], advice: dict[str, str] | None = None) -> str:
    """One sentence per unreachable host (``advice[host]`` in place of Ansible's message where given: a host key
    to trust), and what approval waits for."""
    advice = advice or {}
    each = "; ".join(advice.get(host) or f"{host} is unreachable: {message[:300].rstrip('.')}"
                     for host, message in hosts.items())
    return (f"{each}. Nothing was checked on {', '.join(hosts)}, so the plan cannot be approved: plan again once "
            f"{'it answers' if len(hosts) == 1 else 'they answer'}")


def host_key_failed(message: str) -> bool:
    """Whether Ansible's unreachable message says SSH refused the host's key (unknown or changed)."""
    return HOST_KEY_FAILED in message or HOST_KEY_CHANGED in message


@dataclass(frozen=True)
class Target:
    """Where Ansible connects for one inventory host: address, port, user and the ssh options it adds."""

    host: str
    address: str
    port: int
    user: str | None
    ssh_args: tuple[str, ...]


def target(inventory: Path, host: str, cwd: Path) -> Target:
    """Read ``host``'s connection variables with ``ansible-inventory --host`` (group_vars applied), run from
    ``cwd`` (the project's folder, so its ansible.cfg applies).

    Raises:
        RuntimeError: ansible-inventory failed (its stderr's last line).
    """
    proc = subprocess.run(["ansible-inventory", "-i", str(inventory), "--host", host], cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["ansible-inventory failed"])[-1])
    hv = json.loads(proc.stdout)
    args = [a for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args") for a in shlex.split(
        str(hv.get(key) or ""))]
    address = str(hv.get("ansible_host") or hv.get("ansible_ssh_host") or host)
    if not ADDRESS.fullmatch(address):  # "-oProxyCommand=..." would be an option to ssh-keyscan, not a host
        raise RuntimeError(f"ansible_host {address[:80]!r} is not a host name or address")
    return Target(host=host, address=address,
                  port=int(hv.get("ansible_port") or hv.get("ansible_ssh_port") or 22),
                  user=str(hv["ansible_user"]) if hv.get("ansible_user") else None, ssh_args=tuple(args))


def known_hosts_file(t: Target) -> str:
    """The first ``UserKnownHostsFile`` ssh would use for ``t`` (``ssh -G``: ~/.ssh/config and the inventory's ssh
    args applied; it connects nowhere)."""
    argv = ["ssh", "-G", *t.ssh_args, "-p", str(t.port), *(["-l", t.user] if t.user else []), t.address]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "userknownhostsfile" and value.split():
            return os.path.expanduser(value.split()[0])
    return os.path.expanduser(DEFAULT_KNOWN_HOSTS)


def offered_keys(t: Target) -> list[tuple[str, str]]:
    """``[(known_hosts line, "ED25519 SHA256:...")]`` for each key the host offers now (``ssh-keyscan``), empty
    when it does not answer within :data:`SCAN_TIMEOUT_S`."""
    scan = subprocess.run(["ssh-keyscan", "-T", str(SCAN_TIMEOUT_S), "-p", str(t.port), t.address],
                          capture_output=True, text=True, timeout=SCAN_TIMEOUT_S * 4)
    keys = []
    for line in scan.stdout.splitlines():
        if line.startswith("#") or len(line.split()) < 3:
            continue
        printed = subprocess.run(["ssh-keygen", "-lf", "-"], input=line, capture_output=True, text=True, timeout=10)
        parts = printed.stdout.split()  # 256 SHA256:... host (ED25519)
        if len(parts) >= 4:
            keys.append((line, f"{parts[-1].strip('()')} {parts[1]}"))
    return keys


def host_key_advice(inventory: Path, host: str, message: str, cwd: Path) -> str:
    """What to do about a host whose key SSH refused: the fingerprints it offers and the line to add to the
    known_hosts file ssh reads (or, for a changed key, why not to). Never raises: a step that fails says so."""
    try:
        t = target(inventory, host, cwd)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return f"{host} is unreachable: SSH does not trust its host key (chiffon could not read its address: {exc})"
    where = f"{host} ({t.address}:{t.port})"
    try:
        file = known_hosts_file(t)
        keys = offered_keys(t)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{where} is unreachable: SSH does not trust its host key (chiffon could not read it: {exc})"
    if HOST_KEY_CHANGED in message:
        return (f"{where} is unreachable: its SSH host key CHANGED since {file} recorded it: someone may be between you and the "
                f"host, or it was reinstalled. Compare {', '.join(fp for _, fp in keys) or 'its key'} with the "
                f"host's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console); only if they "
                f"match, remove the old key (`ssh-keygen -R {_known_hosts_name(t)} -f {file}`)")
    if not keys:
        return (f"{where} is unreachable: its SSH host key is not in {file}, and it offered none to ssh-keyscan "
                f"just now")
    offered = "; ".join(fp for _, fp in keys)
    lines = " ".join(shlex.quote(line) for line, _ in keys)
    return (f"{where} is unreachable: its SSH host key is not in {file} yet (first contact). It offers {offered}: "
            f"compare with the host's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on {host}); if it "
            f"matches, trust it (the key{'s' if len(keys) > 1 else ''} shown, not a new scan):\n"
            f"{_mkdir(file)}printf '%s\\n' {lines} >> {shlex.quote(file)}\n")


def _mkdir(file: str) -> str:
    """``mkdir -m 700 -p DIR && `` when the known_hosts file's folder (``~/.ssh``) does not exist yet."""
    folder = os.path.dirname(file)
    return "" if not folder or os.path.isdir(folder) else f"mkdir -m 700 -p {shlex.quote(folder)} && "


def _known_hosts_name(t: Target) -> str:
    return t.address if t.port == 22 else f"[{t.address}]:{t.port}"
