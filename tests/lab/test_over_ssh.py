"""The main job and its faults over real SSH: the lab's hosts (tests/lab/lab.py), host key checking on.

What these prove that the local inventory cannot: a first contact with an unknown host key blocks the plan with the
fingerprint (and the line that trusts it) instead of accepting the key; the files land on the lab host and nowhere
on this machine; a host whose link is down blocks the plan as unreachable; a host whose sshd dies mid-run fails
for that host alone, and the plan, the run and the audit trail say the same; a sudo password typed on a terminal
(``--ask-become-pass``) reaches the one host that asks for it and is found nowhere afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect

from tests.conftest import git_commit_all
from tests.lab.lab import PASSWORD_HOST, Lab

CHIFFON = str(Path(sys.executable).parent / "chiffon")
KUMA = "Deploy Uptime Kuma and add the existing portals to its config"


def _chiffon(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    """``chiffon ARGS --json``: exit code, the JSON summary (stdout), stderr."""
    proc = subprocess.run([CHIFFON, *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    try:
        summary = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from chiffon {args} ({proc.returncode}): {proc.stdout[-2000:]}"
                             f"{proc.stderr[-3000:]}") from None
    return proc.returncode, summary, proc.stderr


def test_the_main_job_over_ssh_asks_to_trust_the_host_key_then_lands_on_the_lab_host(
        lab: Lab, lab_repo: Path, cli_env: dict[str, str]) -> None:
    kuma = lab["east"].path("/opt/homelab/uptime-kuma")
    rc, plan, _ = _chiffon(cli_env, "run", KUMA, "--repo", str(lab_repo), "--inventory", "lab")
    assert rc == 2 and plan["status"] == "blocked", plan
    # the answer stands; what is missing is the trust in east's key, shown with its fingerprint and never accepted
    assert (plan["playbook"], plan["hosts"]) == ("deploy-uptime-kuma.yml", ["east"])
    reason = plan["blocked_reason"]
    assert lab.fingerprint("east") in reason and str(lab.known_hosts) in reason and "first contact" in reason
    assert lab.known_hosts.read_text() == ""
    assert not kuma.exists()

    # the owner compares the fingerprint and runs the command the plan showed: it adds the key that was shown
    command = next(ln for ln in reason.splitlines() if ln.startswith("printf "))
    subprocess.run(["bash", "-c", command], check=True)
    assert lab.known_hosts.read_text().split() == [lab["east"].address, *(
        lab["east"].root / "ssh_host_ed25519_key.pub").read_text().split()[:2]]
    rc, run, err = _chiffon(cli_env, "run", KUMA, "--repo", str(lab_repo), "--inventory", "lab", "--approve")
    assert run["status"] == "succeeded", (run, err[-3000:])
    assert run["changed"] == 3 and run["hosts"] == ["east"]
    assert run["outcome"] == "partial"  # no Docker engine in the lab: rendered, not started, and said so
    assert "image: louislam/uptime-kuma" in (kuma / "compose.yaml").read_text()
    monitors = json.loads((kuma / "monitors.json").read_text())["monitorList"]
    assert {m["name"] for m in monitors} >= {"Portainer", "Grafana", "Home Assistant"}
    # on east only: not on this machine's /opt, nor on the other hosts
    assert not Path("/opt/homelab/uptime-kuma").exists()
    assert not lab["ai"].path("/opt/homelab/uptime-kuma").exists()
    assert not lab["desktop-linux"].path("/opt/homelab/uptime-kuma").exists()
    done = lab.ssh("east", "stat -c %U /opt/homelab/uptime-kuma/compose.yaml")
    assert done.stdout.strip() == lab.user  # written over SSH as the inventory's ansible_user


def test_a_changed_host_key_blocks_and_is_not_replaced(trusted_lab: Lab, lab_repo: Path,
                                                        cli_env: dict[str, str]) -> None:
    lab = trusted_lab
    east = lab["east"]
    forged = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(east.root / "forged")],
                            capture_output=True)
    assert forged.returncode == 0
    before = lab.known_hosts.read_text()
    lab.known_hosts.write_text(before.replace(
        (east.root / "ssh_host_ed25519_key.pub").read_text().split()[1],
        (east.root / "forged.pub").read_text().split()[1]))
    rc, plan, _ = _chiffon(cli_env, "run", KUMA, "--repo", str(lab_repo), "--inventory", "lab")
    assert rc == 2 and plan["status"] == "blocked"
    assert "CHANGED" in plan["blocked_reason"] and lab.fingerprint("east") in plan["blocked_reason"]
    assert (east.root / "forged.pub").read_text().split()[1] in lab.known_hosts.read_text()  # left as it was


def test_a_host_whose_link_is_down_blocks_the_plan_as_unreachable(trusted_lab: Lab, lab_repo: Path,
                                                                  cli_env: dict[str, str]) -> None:
    trusted_lab["east"].cut()
    rc, plan, err = _chiffon(cli_env, "run", KUMA, "--repo", str(lab_repo), "--inventory", "lab")
    assert rc == 2 and plan["status"] == "blocked", plan
    assert plan["playbook"] == "deploy-uptime-kuma.yml"  # the answer first
    reason = plan["blocked_reason"]
    assert reason.startswith("east is unreachable: ") and "timed out" in reason, reason
    assert "Traceback" not in err


SLOW = """# Rotate the homelab logs on the Linux hosts (slow on purpose: the lab's faults strike mid-run).
- name: Rotate the homelab logs
  hosts: linux
  gather_facts: false
  tags: [maintenance, logs]
  tasks:
    - name: Mark the rotation as started
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/rotation-started"
        content: "started\\n"
        mode: "0644"

    - name: Compress the old logs
      ansible.builtin.command: sleep 6
      changed_when: true

    - name: Mark the rotation as done
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/rotation-done"
        content: "done\\n"
        mode: "0644"
"""


def test_sshd_killed_on_one_host_mid_run_fails_that_host_only_and_every_record_agrees(
        trusted_lab: Lab, lab_repo: Path, cli_env: dict[str, str]) -> None:
    lab = trusted_lab
    (lab_repo / "rotate-logs.yml").write_text(SLOW)
    git_commit_all(lab_repo)
    run = subprocess.Popen([CHIFFON, "run", "Rotate the homelab logs", "--repo", str(lab_repo), "--inventory", "lab",
                            "--approve", "--json"], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True)
    started = lab["desktop-linux"].path("/opt/homelab/rotation-started")
    deadline = time.monotonic() + 240
    while not started.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.exists(), run.communicate(timeout=60)
    lab["desktop-linux"].kill_sshd()  # mid-run: the sleep's session dies, and no new one can start
    out, err = run.communicate(timeout=300)
    summary = json.loads(out)
    assert summary["status"] == "failed", (summary, err[-3000:])
    assert summary["outcome"] == "failed"
    assert any("desktop-linux" in r and "unreachable" in r for r in summary["outcome_reasons"]), summary
    for name in ("ai", "east"):  # the others finished
        assert lab[name].path("/opt/homelab/rotation-done").exists(), name
    assert not lab["desktop-linux"].path("/opt/homelab/rotation-done").exists()

    rc, status, _ = _chiffon(cli_env, "status", summary["plan_id"])
    assert rc == 0 and status["status"] == "failed", status
    rc, audit, _ = _chiffon(cli_env, "audit", "--plan", summary["plan_id"])
    assert rc == 0
    records = audit["records"]
    assert records and records[0]["status"] == "failed", records


BECOME = """# Install the homelab's root-owned settings on the database host (as root: sudo).
- name: Install the root-owned homelab settings
  hosts: databases
  gather_facts: false
  become: true
  tasks:
    - name: Write the settings only root may read
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/root-settings.conf"
        content: "owner=root\\n"
        owner: root
        mode: "0600"
"""


def test_ask_become_pass_reaches_the_host_whose_sudo_asks_and_is_found_nowhere(
        trusted_lab: Lab, lab_repo: Path, cli_env: dict[str, str], home: Path, tmp_path: Path) -> None:
    lab = trusted_lab
    (lab_repo / "root-settings.yml").write_text(BECOME)
    git_commit_all(lab_repo)
    request = "Install the root-owned homelab settings"
    # without the password: the plan is the answer, blocked with the way to type it
    rc, plan, _ = _chiffon(cli_env, "run", request, "--repo", str(lab_repo), "--inventory", "lab")
    assert rc == 2 and plan["status"] == "blocked", plan
    assert plan["hosts"] == [PASSWORD_HOST] and "--ask-become-pass" in plan["blocked_reason"], plan

    log = tmp_path / "terminal.log"
    with log.open("w") as transcript:
        child = pexpect.spawn(CHIFFON, ["run", request, "--repo", str(lab_repo), "--inventory", "lab",
                                        "--ask-become-pass", "--approve", "--json"],
                              env={**cli_env, "NO_COLOR": "1", "TERM": "dumb"}, encoding="utf-8", timeout=300)
        child.logfile_read = transcript
        child.expect("(?i)become password: ")
        child.sendline(lab.sudo_password)
        child.expect(pexpect.EOF)
        child.close()
    text = log.read_text()
    assert child.exitstatus == 0, text[-3000:]
    summary = json.loads(text[text.index("\n{") + 1: text.rindex("}") + 1])
    assert summary["status"] == "succeeded" and summary["hosts"] == [PASSWORD_HOST], summary
    written = lab[PASSWORD_HOST].path("/opt/homelab/root-settings.conf")
    assert written.read_text() == "owner=root\n" and written.stat().st_uid == 0
    assert lab.sudo_password not in text
    needle = lab.sudo_password.encode()
    leaks = [str(p) for p in home.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]
    assert leaks == []
