"""Undo's pure parts: what is kept of each result shape Ansible reports (shapes recorded from ansible-core 2.19 runs),
how the records of one path merge, and what never reaches a generated playbook."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chiffon.servers.ansible import undo, undo_plan
from chiffon.servers.ansible.undo import NotKept, before_state
from chiffon.shared.errors import InvalidInput
from chiffon.shared.redact import remember

TEMPLATE_OVER_EXISTING = {
    "changed": True, "dest": "/srv/app.conf", "mode": "0644", "uid": 0, "gid": 0, "owner": "root", "group": "root",
    "diff": [{"before_header": "/srv/app.conf", "before": "old\n", "after_header": "/tmp/x/app.conf.j2",
              "after": "new\n"}],
    "invocation": {"module_args": {"dest": "/srv/app.conf", "mode": None, "owner": None, "group": None}},
}


def test_a_template_over_an_existing_file_keeps_its_content_and_attributes() -> None:
    kept = before_state("template", TEMPLATE_OVER_EXISTING, None)
    assert kept == {"path": "/srv/app.conf", "action": "content", "content": "old\n", "mode": "0644", "owner": 0,
                    "group": 0}


def test_a_task_that_sets_mode_and_owner_takes_them_from_the_stat_before_the_run() -> None:
    res = {**TEMPLATE_OVER_EXISTING, "invocation": {"module_args": {"dest": "/srv/app.conf", "mode": "0644",
                                                                     "owner": "root"}}}
    assert before_state("template", res, {"exists": True, "mode": "0600", "uid": 1234, "gid": 2345}) == {
        "path": "/srv/app.conf", "action": "content", "content": "old\n", "mode": "0600", "owner": 1234, "group": 2345}
    without_stat = before_state("template", res, None)
    assert "mode" not in without_stat and "not known" in without_stat["note"]


def test_a_file_the_run_created_is_to_be_removed() -> None:
    res = {"changed": True, "dest": "/srv/new.conf", "diff": [{"before": "", "after_header": "/srv/new.conf",
                                                               "after": "x\n"}]}
    assert before_state("copy", res, None) == {"path": "/srv/new.conf", "action": "remove"}
    made = {"changed": True, "path": "/srv/d", "state": "directory",
            "diff": {"before": {"path": "/srv/d", "state": "absent"}, "after": {"path": "/srv/d", "state": "directory"}}}
    assert before_state("file", made, None) == {"path": "/srv/d", "action": "remove", "kind": "directory"}


def test_lineinfile_keeps_the_attributes_its_diff_reports() -> None:
    res = {"changed": True, "diff": [
        {"before": "a=1\n", "after": "a=1\nb=2\n", "before_header": "/srv/l.conf (content)"},
        {"before": {"owner": 0, "group": 0, "mode": "0600"}, "after": {"owner": 1234, "group": 99, "mode": "0644"},
         "before_header": "/srv/l.conf (file attributes)"}],
        "invocation": {"module_args": {"path": "/srv/l.conf", "mode": "0644", "owner": "1234", "group": "99"}}}
    assert before_state("lineinfile", res, None) == {"path": "/srv/l.conf", "action": "content", "content": "a=1\n",
                                                      "mode": "0600", "owner": 0, "group": 0}


def test_lineinfile_create_over_an_empty_or_absent_file_says_what_it_does_not_know() -> None:
    res = {"changed": True, "diff": [{"before": "", "after": "b=2\n", "before_header": "/srv/n.conf (content)"}],
           "invocation": {"module_args": {"path": "/srv/n.conf", "create": True}}}
    assert "not known" in before_state("lineinfile", res, None)["note"]
    assert before_state("lineinfile", res, {"exists": False})["action"] == "remove"


@pytest.mark.parametrize(("module", "res", "reason"), [
    ("template", {"changed": True, "dest": "/srv/big", "diff": [{"dst_larger": 104448}]}, "max_diff_size"),
    ("copy", {"changed": True, "dest": "/srv/bin", "diff": [{"dst_binary": 1}]}, "binary"),
    ("copy", {"censored": "the output has been hidden", "changed": True}, "no_log"),
    ("copy", {"changed": True, "dest": "/srv/x"}, "no diff"),
    ("file", {"changed": True, "path": "/srv/gone", "diff": {"before": {"path": "/srv/gone", "state": "file"},
                                                             "after": {"path": "/srv/gone", "state": "absent"}}},
     "deleted"),
])
def test_what_cannot_be_kept_says_why(module: str, res: dict, reason: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(NotKept, match=reason):
        before_state(module, res, None)


@pytest.mark.parametrize(("module", "words"), [
    ("ansible.builtin.pip", "packages"), ("ansible.builtin.apt", "packages"), ("ansible.builtin.shell", "command"),
    ("ansible.builtin.systemd_service", "service"), ("community.docker.docker_container", "containers"),
    ("ansible.builtin.user", "not one undo can reverse"), ("acme.tools.copy", "not one undo can reverse"),
])
def test_modules_that_cannot_be_reversed_are_named(module: str, words: str) -> None:
    assert undo.module_name(module) not in undo.RESTORABLE
    assert words in undo.not_reversible_reason(module)


def record(seq: int, path: str, action: str, **extra: object) -> dict[str, object]:
    return {"seq": seq, "host": "ai", "task": "t", "module": "m", "reversible": True, "path": path, "action": action,
            **extra}


def test_the_earliest_before_state_of_a_path_wins() -> None:
    items, lost = undo_plan.merge([
        record(1, "/srv/a", "attrs", mode="0600"),
        record(2, "/srv/a", "content", blob="b1", sha1="s1", mode="0644", owner=5),
        record(3, "/srv/a", "content", blob="b2", sha1="s2"),
        record(4, "/srv/new", "remove"), record(5, "/srv/new", "content", blob="b3", sha1="s3"),
        {"seq": 6, "host": "ai", "task": "Run", "module": "ansible.builtin.command", "reversible": False, "reason": "r"},
        {"seq": 7, "host": "ai", "task": "Run", "module": "ansible.builtin.command", "reversible": False, "reason": "r"},
    ])
    first, created = items
    assert (first.action, first.blob, first.attrs) == ("content", "b1", {"mode": "0600", "owner": 5})
    assert (created.action, created.blob) == ("remove", None)
    assert [x.task for x in lost] == ["Run"]


def test_hosts_and_paths_a_playbook_must_never_hold_are_refused(tmp_path: Path) -> None:
    remember("hunter2-undo-path")
    items, _ = undo_plan.merge([
        {**record(1, "/srv/ok", "remove")},
        {**record(2, "/srv/../etc/shadow", "remove")},
        {**record(3, "/srv/{{ lookup('pipe','id') }}", "remove")},
        {**record(4, "/srv/it's", "remove")},
        {**record(5, "/srv/a\nb", "remove")},
        {**record(6, "/srv/hunter2-undo-path", "remove")},
        {**record(7, "/srv/kept", "content", blob="0" * 64, sha1="x")},
        {**record(8, "/srv/other", "remove"), "host": "web1:22"},
        {**record(9, "/srv/gone-host", "remove"), "host": "retired"},
    ])
    ok, refused = undo_plan.usable(items, tmp_path, known_hosts={"ai", "web1:22"})
    assert [i.path for i in ok] == ["/srv/ok"]
    assert len(refused) == 8
    assert all("hunter2-undo-path" not in x.task for x in refused)
    assert {"its path holds a secret value", "retired is not in the inventory any more"} <= {x.reason for x in refused}


def test_the_playbook_holds_no_content_and_targets_exactly_the_changed_host(tmp_path: Path) -> None:
    items, _ = undo_plan.merge([record(1, "/srv/a", "content", blob="ab" * 32, sha1="cd" * 20, mode="0600", owner=7,
                                       group=8, secret=True),
                                {**record(2, "/srv/b", "remove"), "host": "db"}])
    text = undo_plan.playbook_text("run-0123456789", "plan-0123456789", items, tmp_path, become=True)
    plays = yaml.safe_load(text)
    assert [p["hosts"] for p in plays] == ["ai:db", "ai", "db"]
    put_back = plays[1]["tasks"][0]
    assert put_back["ansible.builtin.copy"] == {"src": str(tmp_path / ("ab" * 32)), "dest": "/srv/a",
                                                "checksum": "cd" * 20, "force": True, "mode": "0600", "owner": "7",
                                                "group": "8"}
    assert put_back["diff"] is False and plays[1]["become"] is True
    quiet = yaml.safe_load(undo_plan.playbook_text("run-0123456789", "plan-0123456789", items, tmp_path, become=False))
    assert "become" not in quiet[1]  # never become: false, which would undo ansible.cfg's become = True
    assert plays[2]["tasks"][0]["when"] == "inventory_hostname == 'db'"  # a group named db may hold db2 too
    assert put_back["when"] == "inventory_hostname == 'ai'"


@pytest.mark.parametrize("bad", ["../run-0123456789", "run-0123456789\n", "run-01234567890", "RUN-0123456789", ""])
def test_only_a_run_id_is_a_run_id(bad: str) -> None:
    with pytest.raises(InvalidInput, match="not a run id"):
        undo_plan.validate_run_id(bad)


def test_the_stat_before_a_run_only_reads_and_never_fails_the_run() -> None:
    plays = yaml.safe_load(undo.stat_playbook({"ai": ["/srv/a", "/srv/b"]}, False, "chiffon undo x: stat"))
    assert [(p["name"], p["hosts"], "become" in p) for p in plays] == [("chiffon undo x: stat", "ai", False)]
    task = plays[0]["tasks"][0]
    assert task["ansible.builtin.stat"]["path"] == "/srv/a" and task["tags"] == ["always"]
    assert task["ignore_errors"] is True and task["ignore_unreachable"] is True


def test_the_keeper_takes_its_stat_play_and_keeps_the_exact_bytes(tmp_path: Path) -> None:
    import json
    import stat

    keeper = undo.Keeper(tmp_path / "undo", tmp_path / "stat.yml", "chiffon undo x: stat")
    probe = {"event": "runner_on_ok", "event_data": {
        "play": "chiffon undo x: stat", "playbook": str(tmp_path / "stat.yml"), "host": "ai", "task": "stat 0",
        "res": {"stat": {"exists": True, "mode": "0600", "uid": 7, "gid": 8},
                "invocation": {"module_args": {"path": "/srv/app.conf"}}}}}
    # a repo play that read the stat play's name from the run folder and took it: still one of the run's events
    forged = {"event": "runner_on_ok", "event_data": {**probe["event_data"], "playbook": "site.yml",  # type: ignore[dict-item]
                                                      "res": {"stat": {"exists": False}}}}
    assert keeper(forged) is False
    assert keeper(probe) is True  # the stat play's own: never one of the run's events
    res = {**TEMPLATE_OVER_EXISTING, "invocation": {"module_args": {"dest": "/srv/app.conf", "mode": "0644"}},
           "diff": [{"before_header": "/srv/app.conf", "before": "latin \udce9\r\nend", "after": "new\n"}]}
    change = {"event": "runner_on_ok", "event_data": {"play": "Change", "host": "ai", "task": "Render",
                                                       "resolved_action": "ansible.builtin.template", "res": res}}
    assert keeper(change) is False
    record = json.loads((tmp_path / "undo" / undo.INDEX).read_text())
    assert (record["action"], record["mode"], record["owner"], record["group"]) == ("content", "0600", 7, 8)
    blob = tmp_path / "undo" / undo.BLOBS / record["blob"]
    assert blob.read_bytes() == b"latin \xe9\r\nend"  # not UTF-8: the bytes Ansible read, exactly
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "undo").stat().st_mode) == 0o700
    assert keeper({"event": "runner_on_ok", "event_data": None}) is False  # nothing it understands: no error


def test_a_change_made_on_a_delegated_host_is_never_put_back_on_the_play_s_host(tmp_path: Path) -> None:
    import json

    keeper = undo.Keeper(tmp_path / "undo")
    res = {**TEMPLATE_OVER_EXISTING, "_ansible_delegated_vars": {"ansible_delegated_host": "localhost"}}
    keeper({"event": "runner_on_ok", "event_data": {"play": "Change", "host": "web1", "task": "Render on the controller",
                                                    "resolved_action": "ansible.builtin.template", "res": res}})
    record = json.loads((tmp_path / "undo" / undo.INDEX).read_text())
    assert record["reversible"] is False and "delegated host (localhost), not web1" in record["reason"]
    assert not (tmp_path / "undo" / undo.BLOBS).exists() or not any((tmp_path / "undo" / undo.BLOBS).iterdir())
