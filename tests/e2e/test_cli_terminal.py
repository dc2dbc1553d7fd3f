"""On a real terminal (a pty): `--ask-vault-pass` typed once and found nowhere after; the human picks between
candidates retrieval cannot separate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pexpect

from tests.fixtures import repos

CHIFFON = str(Path(sys.executable).parent / "chiffon")
PASSWORD = "vault-pw-7f3c9e1d-never-stored"


def _files_holding(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle`` (the database's files included)."""
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


def test_ask_vault_pass_on_a_terminal_runs_and_the_password_appears_nowhere(
        cli_env: dict[str, str], home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    repo = repos.environments(tmp_path / "envs", encrypt_with=secret)
    secret.unlink()  # from here on the password exists only in this test and the terminal it is typed in
    log = tmp_path / "terminal.log"
    with log.open("w") as transcript:
        child = pexpect.spawn(CHIFFON, ["run", "Deploy Grafana", "--repo", str(repo), "--ask-vault-pass", "--approve",
                                        "--json"], env={**cli_env, "NO_COLOR": "1", "TERM": "dumb"}, encoding="utf-8", timeout=300)
        child.logfile_read = transcript  # what the terminal shows, not what is typed
        child.expect("Vault password: ")
        child.sendline(PASSWORD)
        child.expect(pexpect.EOF)
        child.close()
    text = log.read_text()
    assert child.exitstatus == 0, text[-3000:]
    summary = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert (summary["status"], summary["playbook"], summary["hosts"]) == \
        ("succeeded", "playbooks/deploy-grafana.yml", ["prod-app"])
    assert text.count(PASSWORD) == 0  # not even echoed
    assert _files_holding(home, PASSWORD.encode()) == []  # store, audit repo, runs, logs, Redis
    assert _files_holding(repo, PASSWORD.encode()) == []
    audit = subprocess.run(["git", "-C", str(home / "audit"), "log", "-p", "--all"], capture_output=True, text=True)
    assert PASSWORD not in audit.stdout


def test_ask_vault_pass_without_a_terminal_exits_2_before_anything(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run([CHIFFON, "run", "Deploy Grafana", "--repo", str(repos.environments(tmp_path / "e")),
                           "--ask-vault-pass"], env=cli_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "need a terminal" in " ".join(proc.stderr.split())


def test_on_a_terminal_the_human_picks_between_equal_candidates(cli_env: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / "variants"
    for variant in ("docker", "k3s"):  # the same service twice: a choice for the human
        (repo / variant).mkdir(parents=True)
        (repo / variant / "jellyfin.yml").write_text(
            f"# Jellyfin ({variant})\n- hosts: media\n  gather_facts: false\n  tasks:\n"
            f"    - name: Start Jellyfin on {variant}\n      ansible.builtin.debug: {{msg: x}}\n")
    (repo / "hosts.yml").write_text("all:\n  vars: {ansible_connection: local}\n  children:\n    media:\n"
                                    "      hosts:\n        localhost:\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    child = pexpect.spawn(CHIFFON, ["run", "Deploy Jellyfin", "--repo", str(repo)],
                          env={**cli_env, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}, encoding="utf-8",
                          timeout=300)
    child.logfile_read = (tmp_path / "pick.log").open("w")
    child.expect("which one")
    child.expect(r"1\. (\S+)")
    first = child.match.group(1)
    child.expect(r"2\. (\S+)")
    second = child.match.group(1)
    assert {first, second} == {"docker/jellyfin.yml", "k3s/jellyfin.yml"}
    child.expect("number")
    child.sendline("2")
    child.expect(r"Run plan (plan-\w+) now\?")
    plan_id = child.match.group(1)
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4  # rejected: nothing ran
    shown = subprocess.run([CHIFFON, "audit", "--plan", plan_id, "--json"], env=cli_env, capture_output=True,
                           text=True, timeout=120)
    records = json.loads(shown.stdout)["records"]
    assert any(r.get("playbook") == second for r in records), records
