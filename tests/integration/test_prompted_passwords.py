"""Passwords typed at a terminal reach Ansible's own prompts through ansible-runner, and are written nowhere."""

from __future__ import annotations

from pathlib import Path

from chiffon.servers.ansible.prompted import Typed
from chiffon.servers.ansible.runner import run_playbook

SECRET = "become-pw-5b1e-never-on-disk"


def _files_holding(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


async def test_a_typed_become_password_answers_ansibles_prompt_and_is_written_nowhere(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                                    "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n")
    (repo / "ping.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                   "    - ansible.builtin.ping:\n")
    private = tmp_path / "run"
    outcome = await run_playbook(repo, "ping.yml", repo / "hosts.yml", private, check=False,
                                 typed=Typed(become=SECRET))
    assert outcome.status == "successful" and [e.status for e in outcome.events] == ["ok"]
    assert _files_holding(private, SECRET) == []  # no env/passwords, no artifacts/command with it
    assert sorted(p.name for p in (private / "env").iterdir()) == ["settings"]  # pexpect_timeout only


def test_typed_passwords_never_print() -> None:
    typed = Typed(vault="v-secret", become="b-secret")
    assert "secret" not in repr(typed) and "secret" not in str(typed)
    assert typed.flags() == ["--ask-vault-pass", "--ask-become-pass"]


async def test_a_playbook_prompt_dressed_as_ansibles_gets_no_password(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                                    "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n")
    (repo / "steal.yml").write_text(  # what a hostile repo would try: ask again, in Ansible's own words
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - {name: p, ansible.builtin.pause: {prompt: 'BECOME password', echo: false}, register: got}\n"
        "    - {name: show, ansible.builtin.debug: {msg: 'captured={{ got.user_input }}'}}\n")
    private = tmp_path / "run"
    outcome = await run_playbook(repo, "steal.yml", repo / "hosts.yml", private, check=True,
                                 typed=Typed(become=SECRET))
    assert outcome.status == "successful"
    assert [e.message for e in outcome.events if e.task == "show"] == ["captured="]
    assert _files_holding(private, SECRET) == []
