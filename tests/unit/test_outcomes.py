"""The rules that turn a run's events and checks into its outcome, and the checks a repo may state."""

from __future__ import annotations

import pytest
import yaml

from chiffon.servers.ansible import checks, outcomes
from chiffon.servers.ansible.events import TaskEvent, when_at
from chiffon.shared.errors import ConfigError


def event(task: str, status: str, module: str = "ansible.builtin.command", message: str = "",
          changed: bool = False) -> TaskEvent:
    return TaskEvent(seq=1, event=f"runner_on_{status}", status=status, host="east", task=task, module=module,
                     changed=changed, message=message)


@pytest.mark.parametrize(("condition", "needs"), [
    ("docker_info.rc == 0", True),
    ("pg_ready.rc | int == 0", True),
    ("probe is succeeded", True),
    ("probe is not failed", True),
    ("not probe.failed", True),
    ("conf.stat.exists", True),
    ("docker_check.rc != 0", False),         # install it if missing: skipped means it is there
    ("not conf.stat.exists", False),
    ("jellyfin_enabled | default(false)", False),  # configuration, not the host
    ("inventory_hostname in groups['gpu']", False),
])
def test_which_skip_conditions_mean_the_host_lacked_what_the_task_needs(condition: str, needs: bool) -> None:
    assert outcomes.needs_success(condition) is needs


def test_a_state_changing_task_skipped_by_a_failed_probe_makes_the_run_partial() -> None:
    verdict = outcomes.judge("successful", [
        event("Check whether a Docker engine is available", "ok"),
        event("Start Uptime Kuma", "skipped", message="condition false: docker_info.rc == 0"),
    ], [], [], {})
    assert verdict.outcome == "partial"
    assert verdict.reasons[0].startswith("'Start Uptime Kuma' was skipped on east: docker_info.rc == 0 was false")


def test_an_install_if_missing_skip_and_a_read_only_skip_leave_the_run_achieved() -> None:
    verdict = outcomes.judge("successful", [
        event("Install Docker", "skipped", "ansible.builtin.apt", "condition false: docker_check.rc != 0"),
        event("Show the version", "skipped", "ansible.builtin.debug", "condition false: version.rc == 0"),
        event("Render config", "ok", "ansible.builtin.template", changed=True),
    ], [], [], {})
    assert verdict.outcome == "achieved"
    assert "nothing verified it" in verdict.reasons[0]
    assert [s["task"] for s in verdict.skipped] == ["Install Docker", "Show the version"]


def test_an_ignored_failure_of_a_changing_task_is_partial_and_listed() -> None:
    verdict = outcomes.judge("successful", [event("Restart the service", "ignored", message="unit not found")],
                             [], [], {})
    assert verdict.outcome == "partial" and "errors ignored" in verdict.reasons[0]
    assert verdict.ignored == [{"task": "Restart the service", "host": "east", "message": "unit not found"}]


def test_everything_skipped_is_partial_and_cancel_and_timeout_are_named() -> None:
    assert outcomes.judge("successful", [event("a", "skipped")], [], [], {}).reasons == [
        "nothing was applied: every task was skipped"]
    assert outcomes.judge("canceled", [], [], [], {}).outcome == "cancelled"
    timeout = outcomes.judge("timeout", [], [], [], {}, timeout_s=60)
    assert timeout.outcome == "failed" and "60 s" in timeout.reasons[0]


def test_a_failed_check_comes_first_with_its_failing_sentence() -> None:
    check = checks.Check(name="Kuma runs", failing="Uptime Kuma is not running", kind="http",
                         target="http://x:3001", hosts="monitoring")
    verdict = outcomes.judge("successful", [event("Render", "ok", "template", changed=True)], [],
                             [checks.Result(check, "east", False, "http://x:3001: connection refused")], {})
    assert verdict.reasons == ["Uptime Kuma is not running: http://x:3001: connection refused"]
    assert verdict.checks == [{"name": "Kuma runs", "ok": False, "evidence": "http://x:3001: connection refused",
                               "host": "east", "kind": "http", "target": "http://x:3001"}]


def stated(text: str, playbook: str = "site.yml", tags: list[str] | None = None) -> list[checks.Check]:
    return checks.parse(yaml.safe_load(text), playbook, tags or [], "all")


def test_the_checks_a_repo_states_are_read_with_their_defaults_and_tags() -> None:
    found = stated("""
checks:
  site.yml:
    - {name: Kuma runs, failing: Kuma is down, container: uptime-kuma, tags: [kuma]}
    - {name: Redis runs, container: redis, tags: [redis]}
    - {file: "{{ homelab_root }}/backups/*.gz", fresh: true, hosts: databases}
    - {tcp: "{{ ansible_host | default(inventory_hostname) }}:6379"}
""", tags=["kuma"])
    assert [(c.kind, c.target, c.hosts) for c in found] == [
        ("container", "uptime-kuma", "all"), ("file", "{{ homelab_root }}/backups/*.gz", "databases"),
        ("tcp", "{{ ansible_host | default(inventory_hostname) }}:6379", "all")]
    assert found[1].fresh and found[1].failing == "not verified: file {{ homelab_root }}/backups/*.gz"


@pytest.mark.parametrize("entry", [
    '{file: "{{ lookup(\'pipe\', \'id\') }}"}',                # a lookup runs code on the controller
    '{http: "http://{{ x | map(\'d\') }}"}',                  # only default() may follow a variable
    '{file: "/tmp/{% if true %}x{% endif %}"}',                 # no statements
    '{container: "kuma; rm -rf /"}',                           # names reach argv literally
    '{container: "{{ name }}"}',                               # and are never templated
    '{service: "--user"}',                                     # nor read as an option
    '{http: "file:///etc/shadow"}',                            # http(s) only
    '{container: a, http: "http://x"}',                        # exactly one kind
    '{container: a, shell: id}',                               # unknown keys
    '{container: a, name: "Kuma {{ x }}"}',                    # sentences are plain text
    '{container: a, hosts: "all; id"}',                        # hosts is a pattern
])
def test_a_check_that_could_run_code_or_reach_elsewhere_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError):
        stated(f"checks:\n  site.yml:\n    - {entry}\n")


def test_the_verification_play_only_reads_and_never_templates_docker_s_format() -> None:
    found = [checks.Check(name="c", failing="f", kind="container", target="kuma", hosts="monitoring"),
             checks.Check(name="h", failing="f", kind="http", target="http://{{ ansible_host }}:1", hosts="all")]
    text = checks.verify_playbook(found, "chiffon verify checks-1")
    assert "!unsafe '{{.State.Running}}'" in text
    plays = yaml.safe_load(text.replace("!unsafe ", ""))
    assert [p["hosts"] for p in plays] == ["monitoring", "all"] and plays[0]["name"] == "chiffon verify checks-1"
    for task in (t for p in plays for t in p["tasks"]):
        assert task["check_mode"] is False and task["changed_when"] is False and task["failed_when"] is False
        assert task["ignore_unreachable"] is True
    assert plays[1]["tasks"][0]["ansible.builtin.debug"] == {"msg": "http://{{ ansible_host }}:1"}


def test_a_skip_condition_is_read_from_the_task_s_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    playbook = tmp_path / "p.yml"
    playbook.write_text("- hosts: all\n  tasks:\n    - name: a\n      command: x\n      when:\n        - a.rc == 0\n"
                        "        - b\n    - name: b\n      command: y\n")
    assert when_at(f"{playbook}:3") == "a.rc == 0 and b"
    assert when_at(f"{playbook}:8") == "" and when_at("no-line") == "" and when_at(f"{tmp_path}/gone.yml:1") == ""


def test_checks_are_derived_from_a_compose_template_a_role_default_and_a_service_task(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from chiffon.servers.ansible.catalog import Catalog
    from tests.conftest import EXAMPLE

    example = Catalog.load(EXAMPLE, "inventories/local.ini")
    redis = checks.expectations(example, example.unit_for("deploy-redis.yml"), "deploy-redis.yml", [])
    assert [(c.kind, c.target, c.source) for c in redis] == [  # chiffon.yml states none for it: derived
        ("container", "redis", "derived: container_name in templates/redis/compose.yaml.j2"),
        ("tcp", "{{ ansible_host | default(inventory_hostname) }}:6379",  # redis_port, a play var
         "derived: ports in templates/redis/compose.yaml.j2")]
    kuma = checks.expectations(example, example.unit_for("deploy-uptime-kuma.yml"), "deploy-uptime-kuma.yml", [])
    assert [c.source for c in kuma] == ["chiffon.yml", "chiffon.yml"]  # stated: derived ones are not added

    repo = tmp_path / "repo"
    (repo / "roles" / "jellyfin" / "templates").mkdir(parents=True)
    (repo / "roles" / "jellyfin" / "defaults").mkdir()
    (repo / "roles" / "jellyfin" / "tasks").mkdir()
    (repo / "roles" / "jellyfin" / "defaults" / "main.yml").write_text("jellyfin_port: 8096\n")
    (repo / "roles" / "jellyfin" / "templates" / "docker-compose.yml.j2").write_text(
        "services:\n  jellyfin:\n    container_name: jellyfin\n    ports:\n      - \"{{ jellyfin_port }}:8096\"\n"
        "      - \"{{ unknown_port }}:7359\"\n")
    (repo / "roles" / "jellyfin" / "tasks" / "main.yml").write_text("- ansible.builtin.debug: {msg: x}\n")
    (repo / "site.yml").write_text("- hosts: media\n  roles: [{role: jellyfin, tags: [jellyfin]}]\n"
                                   "- hosts: all\n  tasks:\n    - name: Start nginx\n"
                                   "      ansible.builtin.service: {name: nginx, state: started}\n")
    (repo / "hosts.ini").write_text("[media]\nm1\n")
    catalog = Catalog.load(repo, "hosts.ini")
    found = checks.expectations(catalog, catalog.unit_for("site.yml", ["jellyfin"]), "site.yml", ["jellyfin"])
    assert [(c.kind, c.target) for c in found] == [("container", "jellyfin"),
                                                   ("tcp", "{{ ansible_host | default(inventory_hostname) }}:8096")]


def test_a_repo_play_that_takes_the_checks_play_name_stays_one_of_the_run_s_plays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from chiffon.servers.ansible.events import EventCollector
    from chiffon.shared.redact import Redactor

    verify = (tmp_path / "verify" / "verify.yml", "chiffon verify checks-0123456789")
    collector = EventCollector(Redactor([]), verify)
    ours = {"event": "runner_on_ok", "event_data": {"play": verify[1], "playbook": str(verify[0]), "host": "east",
                                                    "task": "chiffon check 0", "res": {"rc": 0, "stdout": "true"}}}
    # the name can be read from the run folder by a lookup; the playbook file cannot be claimed
    forged = {"event": "runner_on_ok", "event_data": {**ours["event_data"], "playbook": "site.yml",  # type: ignore[dict-item]
                                                      "task_action": "ansible.builtin.copy",
                                                      "res": {"changed": True, "rc": 0, "stdout": "true"}}}
    assert collector.feed(ours) is None
    event = collector.feed(forged)
    assert event is not None and event.changed and event.task == "chiffon check 0"
    assert collector.outcome.probes == [{"task": "chiffon check 0", "host": "east", "status": "ok",
                                         "res": {"rc": 0, "stdout": "true"}}]


def test_a_stated_check_reads_only_the_hosts_its_playbook_targets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from chiffon.servers.ansible.catalog import Catalog
    from tests.conftest import EXAMPLE

    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (repo / "chiffon.yml").write_text("checks:\n  deploy-uptime-kuma.yml:\n"
                                      "    - {file: /root/.ssh/id_ed25519, hosts: ai}\n")  # Kuma runs on east only
    catalog = Catalog.load(repo, "inventories/local.ini")
    with pytest.raises(ConfigError, match=r"names hosts the playbook does not target \(ai\)"):
        checks.expectations(catalog, catalog.unit_for("deploy-uptime-kuma.yml"), "deploy-uptime-kuma.yml", [])
    (repo / "chiffon.yml").write_text("checks:\n  deploy-uptime-kuma.yml:\n    - {container: kuma, hosts: east}\n")
    assert [c.hosts for c in checks.expectations(catalog, catalog.unit_for("deploy-uptime-kuma.yml"),
                                                 "deploy-uptime-kuma.yml", [])] == ["east"]


def test_checks_on_the_unit_s_own_hosts_read_the_inventory_beside_the_check() -> None:
    from chiffon.servers.ansible.catalog import Catalog
    from tests.conftest import EXAMPLE

    catalog = Catalog.load(EXAMPLE, "inventories/local.ini")
    kuma = checks.expectations(catalog, catalog.unit_for("deploy-uptime-kuma.yml"), "deploy-uptime-kuma.yml", [])
    assert {c.hosts for c in kuma} == {":".join(catalog.unit_for("deploy-uptime-kuma.yml").hosts)}
    assert "_inventory_reading" in vars(catalog)  # started, not waited for: ansible-inventory runs beside the check
    catalog.wait_inventory()
    assert catalog.inventory_data == Catalog.load(EXAMPLE, "inventories/local.ini").inventory_data


def test_an_inventory_ansible_cannot_parse_still_fails_when_read_beside_the_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from chiffon.servers.ansible.catalog import Catalog
    from chiffon.shared.errors import RepoError
    from tests.conftest import EXAMPLE

    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (repo / "ansible.cfg").write_text((repo / "ansible.cfg").read_text() + "\n[inventory]\nunparsed_is_failed = True\n")
    (repo / "inventories" / "local.ini").write_text("[monitoring\neast ansible_connection=local\n")
    catalog = Catalog.load(repo, "inventories/local.ini")
    checks.expectations(catalog, catalog.unit_for("deploy-uptime-kuma.yml"), "deploy-uptime-kuma.yml", [])
    with pytest.raises(RepoError, match="could not be parsed"):
        catalog.wait_inventory()  # what plans.create_plan waits for once the check has run
    with pytest.raises(RepoError, match="could not be parsed"):
        catalog.groups()


def test_a_cancelled_run_kills_the_ansible_playbook_it_left_and_nothing_else(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from chiffon.servers.ansible.runner import _kill_left

    fake = tmp_path / "ansible-playbook"  # stands in for a playbook ansible-runner started and did not kill
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    ours = subprocess.Popen([str(fake)], env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "run" / "tmp")},
                            start_new_session=True)
    other = subprocess.Popen([str(fake)], env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "other" / "tmp")},
                             start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _cmdline_ready(ours.pid):
            time.sleep(0.05)
        assert _kill_left(tmp_path / "run") == [ours.pid]
        assert ours.wait(10) == -9 and other.poll() is None
    finally:
        other.kill()
        ours.kill()


def _cmdline_ready(pid: int) -> bool:
    import psutil

    try:
        return "ansible-playbook" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
