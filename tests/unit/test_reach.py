"""Hosts a check could not reach (servers/ansible/reach.py), host key checking as Ansible decides it, and how an
unreachable host or a sudo that wants a password reads in a plan and in a run's outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.servers.ansible import outcomes, reach
from chiffon.servers.ansible.ansible_cfg import host_key_checking
from chiffon.servers.ansible.events import EventCollector, Outcome, TaskEvent
from chiffon.shared.redact import Redactor

KEY_FAILED = "Task failed: Failed to connect to the host via ssh: Host key verification failed."


def _unreachable(host: str, message: str, task: str = "Create the directories") -> TaskEvent:
    return TaskEvent(seq=1, event="runner_on_unreachable", status="unreachable", host=host, task=task,
                     module="ansible.builtin.file", changed=False, message=message)


@pytest.mark.parametrize(("cfg", "env", "expected"), [
    (None, {}, "True"),                                     # Ansible's default, not ansible-runner's False
    ("[defaults]\nhost_key_checking = False\n", {}, "False"),  # the project's word
    ("[defaults]\nhost_key_checking = yes\n", {}, "True"),
    ("[defaults]\nhost_key_checking = False\n", {"ANSIBLE_HOST_KEY_CHECKING": "True"}, "True"),  # env wins
    ("[defaults\nbroken", {}, "True"),                       # unreadable: Ansible's default
])
def test_host_key_checking_is_what_ansible_itself_would_use(tmp_path: Path, cfg: str | None, env: dict[str, str],
                                                            expected: str) -> None:
    if cfg is not None:
        (tmp_path / "ansible.cfg").write_text(cfg)
    assert host_key_checking(tmp_path, env) == expected


def test_unreachable_hosts_are_read_from_events_and_the_recap() -> None:
    outcome = Outcome(status="failed", rc=4, events=[_unreachable("east", KEY_FAILED)],
                      stats={"dark": {"east": 1, "ai": 1}, "ok": {"desktop-linux": 2}})
    assert reach.unreachable(outcome) == {
        "east": "Failed to connect to the host via ssh: Host key verification failed.", "ai": "unreachable"}
    assert reach.host_key_failed(KEY_FAILED)
    assert not reach.host_key_failed("ssh: connect to host 10.0.0.2 port 22: Connection timed out")


def test_a_blocked_reason_names_each_host_and_uses_the_advice_where_given() -> None:
    text = reach.blocked_reason({"east": "Failed to connect: Connection timed out.", "ai": "x"},
                                {"ai": "ai (10.0.0.1:22) is unreachable: its SSH host key is not in f yet"})
    assert text.startswith("east is unreachable: Failed to connect: Connection timed out; ai (10.0.0.1:22)")
    assert text.endswith("plan again once they answer")


def test_an_unreachable_loop_says_why_not_all_items_completed() -> None:
    collector = EventCollector(Redactor())
    collector.feed({"event": "runner_on_unreachable", "event_data": {
        "host": "east", "task": "Create the directories", "task_action": "ansible.builtin.file",
        "res": {"msg": "All items completed", "unreachable": True,
                "results": [{"msg": KEY_FAILED, "unreachable": True}]}}})
    assert collector.outcome.events[0].message == KEY_FAILED
    assert collector.outcome.failures[0]["unreachable"] is True


def test_a_host_lost_mid_run_is_named_as_unreachable_in_the_outcome() -> None:
    failure = {"task": "Compress the old logs", "host": "desktop-linux", "module": "command", "rc": None,
               "unreachable": True, "message": "Task failed: Failed to connect to the host via ssh: ssh: connect "
                                               "to host 10.0.0.13 port 22: Connection refused"}
    verdict = outcomes.judge("failed", [], [failure], [], {})
    assert verdict.outcome == "failed"
    assert verdict.reasons == ["desktop-linux is unreachable (during 'Compress the old logs'): Failed to connect to "
                               "the host via ssh: ssh: connect to host 10.0.0.13 port 22: Connection refused"]


def test_an_inventory_address_that_would_be_an_option_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("east ansible_host='-oProxyCommand=touch /tmp/pwned-by-inventory'\n")
    with pytest.raises(RuntimeError, match="is not a host name or address"):
        reach.target(tmp_path / "hosts.ini", "east", tmp_path)
    advice = reach.host_key_advice(tmp_path / "hosts.ini", "east", KEY_FAILED, tmp_path)
    assert "could not read its address" in advice and not Path("/tmp/pwned-by-inventory").exists()
