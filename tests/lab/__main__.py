"""Start and stop the three-host lab by hand (docs/lab.md), as root.

    python -m tests.lab up [--dir /var/tmp/chiffon-lab]   # make it; prints the hosts, the user and the inventory
    python -m tests.lab status [--dir ...]                # which hosts answer on port 22
    python -m tests.lab down [--dir ...]                  # remove all of it
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from chiffon.shared.resources import example_repo
from tests.lab.lab import Lab, missing

DEFAULT_DIR = Path("/var/tmp/chiffon-lab")


def _example_repo(lab: Lab, dest: Path) -> Path:
    """A git copy of the example repo with the lab's inventory as ``inventories/lab.ini``."""
    shutil.copytree(example_repo(), dest)
    (dest / "inventories" / "lab.ini").write_text(lab.inventory())
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(dest), "-c", "user.name=chiffon lab", "-c", "user.email=lab@localhost",
                    "commit", "-q", "-m", "The example repo, with the lab's inventory"], check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "status", "down"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"the lab's folder (default {DEFAULT_DIR})")
    parser.add_argument("--trust", action="store_true",
                        help="with up: put the hosts' keys in the lab's known_hosts (otherwise the first plan "
                             "asks you to trust them)")
    args = parser.parse_args(argv)
    state = args.dir / "lab.json"
    if args.action == "up":
        if state.exists():
            print(f"a lab is already up in {args.dir} (python -m tests.lab down --dir {args.dir} first)",
                  file=sys.stderr)
            return 1
        why = missing()
        if why:
            print(f"cannot start the lab: {why}", file=sys.stderr)
            return 2
        lab = Lab(args.dir).start()
        if args.trust:
            lab.trust()
        inventory = args.dir / "lab.ini"
        inventory.write_text(lab.inventory())
        repo = _example_repo(lab, args.dir / "homelab-infra")
        print(f"lab {lab.lab_id} up in {args.dir}")
        for host in lab.hosts.values():
            print(f"  {host.name:14} {host.address:15} ssh -i {lab.key} -o UserKnownHostsFile={lab.known_hosts} "
                  f"{lab.user}@{host.address}")
        print(f"  user {lab.user}; sudo password (asked on ai only): {lab.sudo_password}")
        print(f"  inventory: {inventory}")
        print(f"  the example repo with it as inventories/lab.ini: {repo}")
        print(f'  try: uv run chiffon run "Deploy Uptime Kuma and add the existing portals to its config" '
              f"--repo {repo} --inventory lab")
        print("  a root shell inside a host: " + "; ".join(
            f"{h.name}: nsenter -t {h.anchor_pid} -n -m -u bash" for h in lab.hosts.values()))
        return 0
    if not state.exists():
        print(f"no lab in {args.dir}", file=sys.stderr)
        return 0 if args.action == "down" else 1
    lab = Lab.load(args.dir)
    if args.action == "down":
        lab.stop()
        print(f"lab {lab.lab_id} removed")
        return 0
    for host in lab.hosts.values():
        try:
            socket.create_connection((host.address, 22), timeout=2).close()
            answer = "sshd answers"
        except OSError as e:
            answer = f"no answer on port 22 ({e})"
        print(f"{host.name:14} {host.address:15} {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
