"""``chiffon undo RUN``: real runs keep their before-states, and an undo plan (approved, then executed through the one
run path) puts them back byte for byte; what cannot be put back is listed; attacks on the run id and on the kept
files are refused. Real ansible-runner on localhost, real PostgreSQL."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chiffon.servers.ansible import execution, plans, undo, undo_plan
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput, PlanNotFound, PlanStateError
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all, make_repo

FILES_PLAYBOOK = """# Change files for the undo tests.
- name: Change files
  hosts: ai
  gather_facts: false
  vars:
    undo_dir: undo
    redis_password: unset
  tasks:
    - name: Render the app config over the existing one
      ansible.builtin.template:
        src: templates/undo/app.conf.j2
        dest: "{{ homelab_root }}/{{ undo_dir }}/app.conf"
        mode: "0644"
        owner: root
        group: root
    - name: Add a line
      ansible.builtin.lineinfile:
        path: "{{ homelab_root }}/{{ undo_dir }}/lines.conf"
        line: "added=1"
    - name: Create a folder
      ansible.builtin.file:
        path: "{{ homelab_root }}/{{ undo_dir }}/newdir"
        state: directory
        mode: "0750"
    - name: Write a file in it
      ansible.builtin.copy:
        content: "fresh\\n"
        dest: "{{ homelab_root }}/{{ undo_dir }}/newdir/fresh.txt"
        mode: "0644"
    - name: Run a command
      ansible.builtin.command: "true"
"""

APP_TEMPLATE = "requirepass {{ redis_password }}\nmaxmemory 2gb\n"

PIP_PLAYBOOK = """# Install a package into a virtualenv and render a file (undo: the package is not reversible).
- name: Install a package
  hosts: ai
  gather_facts: false
  vars:
    undo_dir: pip
    wheel: none
  tasks:
    - name: Write the settings
      ansible.builtin.copy:
        content: "new settings\\n"
        dest: "{{ homelab_root }}/{{ undo_dir }}/settings.conf"
    - name: Install the probe package
      ansible.builtin.pip:
        name: "{{ wheel }}"
        virtualenv: "{{ homelab_root }}/{{ undo_dir }}/venv"
        virtualenv_command: "{{ ansible_playbook_python }} -m venv"
        extra_args: --no-index
"""

COMMAND_PLAYBOOK = """# Only a command (undo: nothing to put back).
- name: Only a command
  hosts: ai
  gather_facts: false
  tasks:
    - name: Touch nothing chiffon can see
      ansible.builtin.command: "true"
      check_mode: false
"""

BIG_PLAYBOOK = """# Overwrite a file larger than Ansible's diff limit, and a small one.
- name: Overwrite files
  hosts: ai
  gather_facts: false
  tasks:
    - name: Overwrite the big file
      ansible.builtin.copy:
        content: "small now\\n"
        dest: "{{ homelab_root }}/big/big.txt"
    - name: Overwrite the small file
      ansible.builtin.copy:
        content: "small now\\n"
        dest: "{{ homelab_root }}/big/small.txt"
"""

SECRET = "Zq8-undo-value-7731"  # no secret-looking key beside it: only masking by value can hide it


@pytest.fixture(scope="module")
def undo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("undo-iac") / "homelab-infra")
    (root / "undo-files.yml").write_text(FILES_PLAYBOOK)
    (root / "undo-pip.yml").write_text(PIP_PLAYBOOK)
    (root / "undo-command.yml").write_text(COMMAND_PLAYBOOK)
    (root / "undo-big.yml").write_text(BIG_PLAYBOOK)
    (root / "templates" / "undo").mkdir(parents=True)
    (root / "templates" / "undo" / "app.conf.j2").write_text(APP_TEMPLATE)
    git_commit_all(root)
    return root


@pytest.fixture
def svc(rt: Runtime, undo_repo: Path) -> AnsibleService:
    return AnsibleService.for_runtime(rt, undo_repo)


async def run_approved(svc: AnsibleService, playbook: str, **kwargs: Any) -> execution.RunResult:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), playbook, **kwargs)
    assert plan.blocked_reason is None, plan.blocked_reason
    await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")
    return await execution.execute(svc.rt, await svc.catalog(), plan.id)


async def approve_and_run(svc: AnsibleService, plan: plans.Plan) -> execution.RunResult:
    assert plan.blocked_reason is None, plan.blocked_reason
    await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")
    return await execution.execute(svc.rt, await svc.catalog(), plan.id)


def before_files(folder: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """``{name: (bytes, mode, uid, gid)}`` of every file under ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            out[str(path.relative_to(folder))] = (path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid,
                                                  info.st_gid)
    return out


def prepare(targets: Path, name: str) -> Path:
    folder = targets / "ai" / name
    folder.mkdir(parents=True)
    app = folder / "app.conf"
    app.write_bytes(f"requirepass {SECRET}\nmaxmemory 1gb\n# {{{{ not templated }}}}\r\nno newline at end".encode())
    os.chmod(app, 0o600)
    os.chown(app, 1234, 2345)
    (folder / "lines.conf").write_text("first=1\n")
    return folder


async def test_a_template_change_is_undone_byte_for_byte(svc: AnsibleService, targets: Path) -> None:
    folder = prepare(targets, "bytes")
    before = before_files(folder)
    run = await run_approved(svc, "undo-files.yml", extra_vars={"undo_dir": "bytes", "redis_password": SECRET})
    assert run.status == "succeeded"
    app = folder / "app.conf"
    assert app.read_text() == f"requirepass {SECRET}\nmaxmemory 2gb\n"
    assert (app.stat().st_uid, stat.S_IMODE(app.stat().st_mode)) == (0, 0o644)  # the run changed all three
    events = await execution.run_events(svc.rt, run.run_id)
    assert run.changed == 5 and [e["task"] for e in events if e["task"].startswith("stat")] == []  # undo's stat play

    undone = await undo_plan.plan_undo(svc, run.run_id)
    assert undone.plan.status == "pending_approval" and undone.plan.generated_playbook
    restored = {r.path.rsplit("/", 1)[-1]: r for r in undone.restores}
    assert (restored["app.conf"].action, restored["app.conf"].mode, restored["app.conf"].owner,
            restored["app.conf"].group) == ("content", "0600", 1234, 2345)
    result = await approve_and_run(svc, undone.plan)
    assert result.status == "succeeded", result.failure
    assert before_files(folder) == before  # content, mode, uid and gid of every file, and nothing else left


async def test_created_files_and_folders_are_removed_and_a_lineinfile_change_restored(
        svc: AnsibleService, targets: Path) -> None:
    folder = prepare(targets, "created")
    run = await run_approved(svc, "undo-files.yml", extra_vars={"undo_dir": "created"})
    assert (folder / "newdir" / "fresh.txt").is_file() and "added=1" in (folder / "lines.conf").read_text()
    undone = await undo_plan.plan_undo(svc, run.run_id)
    actions = {r.path.rsplit("/", 1)[-1]: r.action for r in undone.restores}
    assert actions == {"app.conf": "content", "lines.conf": "content", "newdir": "remove", "fresh.txt": "remove"}
    assert (await approve_and_run(svc, undone.plan)).status == "succeeded"
    assert not (folder / "newdir").exists()
    assert (folder / "lines.conf").read_text() == "first=1\n"


async def test_a_command_is_listed_as_not_reversible(svc: AnsibleService, targets: Path) -> None:
    prepare(targets, "listed")
    run = await run_approved(svc, "undo-files.yml", extra_vars={"undo_dir": "listed"})
    undone = await undo_plan.plan_undo(svc, run.run_id)
    assert [(x.task, x.module) for x in undone.not_reversible] == [("Run a command", "ansible.builtin.command")]
    assert any(w.startswith("not reversible: Run a command (ansible.builtin.command) on ai: ran a command")
               for w in undone.plan.warnings)


def probe_wheel(folder: Path) -> Path:
    """A one-module wheel built by hand: pip installs it with no index and no network."""
    wheel = folder / "chiffon_undo_probe-0.1-py3-none-any.whl"
    info = "chiffon_undo_probe-0.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("chiffon_undo_probe/__init__.py", "X = 1\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: chiffon-undo-probe\nVersion: 0.1\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: chiffon-tests\nRoot-Is-Purelib: true\n"
                                    "Tag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", f"chiffon_undo_probe/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n"
                                     f"{info}/RECORD,,\n")
    return wheel


async def test_an_installed_package_is_listed_as_not_reversible(
        svc: AnsibleService, targets: Path, tmp_path: Path) -> None:
    folder = targets / "ai" / "pip"
    folder.mkdir(parents=True)
    (folder / "settings.conf").write_text("old settings\n")
    run = await run_approved(svc, "undo-pip.yml", extra_vars={"wheel": str(probe_wheel(tmp_path))})
    assert run.status == "succeeded", run.failure
    assert list((folder / "venv").glob("lib/python*/site-packages/chiffon_undo_probe"))
    undone = await undo_plan.plan_undo(svc, run.run_id)
    assert [(x.module, x.reason) for x in undone.not_reversible] == [
        ("ansible.builtin.pip", "installed or removed packages; undo does not reinstall or remove them")]
    assert any("Install the probe package (ansible.builtin.pip)" in w for w in undone.plan.warnings)
    assert [r.path.rsplit("/", 1)[-1] for r in undone.restores] == ["settings.conf"]


async def test_a_run_with_nothing_restorable_says_so_and_stores_nothing(svc: AnsibleService, rt: Runtime) -> None:
    run = await run_approved(svc, "undo-command.yml")
    count = await rt.store.pool.fetchval("SELECT count(*) FROM plans")
    with pytest.raises(InvalidInput, match=r"kept nothing that can be put back: .*ran a command"):
        await undo_plan.plan_undo(svc, run.run_id)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM plans") == count


@pytest.mark.parametrize("bad", ["../run-0123456789", "run-0123456789/../../etc", "/etc/passwd", "plan-0123456789",
                                 "run-0123456789\n", ""])
async def test_a_run_id_with_path_characters_is_refused(svc: AnsibleService, rt: Runtime, bad: str) -> None:
    count = await rt.store.pool.fetchval("SELECT count(*) FROM plans")
    with pytest.raises(InvalidInput, match="is not a run id"):
        await undo_plan.plan_undo(svc, bad)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM plans") == count


async def test_an_unknown_run_is_not_found(svc: AnsibleService) -> None:
    with pytest.raises(PlanNotFound, match="no run 'run-0000000000'"):
        await undo_plan.plan_undo(svc, "run-0000000000")


async def test_a_run_that_has_not_ended_is_refused(svc: AnsibleService, rt: Runtime) -> None:
    plan = await plans.create_plan(rt, await svc.catalog(), "undo-command.yml")
    run_id = plans.new_id("run")
    await rt.store.pool.execute("INSERT INTO runs (id, plan_id, status) VALUES ($1,$2,'running')", run_id, plan.id)
    with pytest.raises(PlanStateError, match="has not ended"):
        await undo_plan.plan_undo(svc, run_id)


async def test_a_before_state_edited_after_approval_is_never_restored(
        svc: AnsibleService, rt: Runtime, targets: Path) -> None:
    folder = prepare(targets, "edited")
    run = await run_approved(svc, "undo-files.yml", extra_vars={"undo_dir": "edited"})
    after = (folder / "app.conf").read_bytes()
    undone = await undo_plan.plan_undo(svc, run.run_id)
    await plans.decide(rt, undone.plan.id, "approved", approver="tester", channel="cli")
    kept = rt.settings.runs_dir / run.run_id / undo.FOLDER / undo.BLOBS
    for blob in kept.iterdir():  # someone with the account's access rewrites what was approved
        blob.write_text("evil = true\n")
    result = await execution.execute(rt, await svc.catalog(), undone.plan.id)
    assert result.status == "failed"
    assert "changed after the plan was approved" in str(result.failure)
    assert (folder / "app.conf").read_bytes() == after  # nothing put back, least of all the edited bytes
    assert (folder / "newdir").is_dir()  # the check of every kept file comes before any change


async def test_a_secret_in_a_before_state_is_kept_exactly_and_never_shown(
        svc: AnsibleService, rt: Runtime, targets: Path) -> None:
    folder = prepare(targets, "secret")
    run = await run_approved(svc, "undo-files.yml", extra_vars={"undo_dir": "secret", "redis_password": SECRET},
                             secret_vars=["redis_password"])
    kept = rt.settings.runs_dir / run.run_id / undo.FOLDER
    blobs = list((kept / undo.BLOBS).iterdir())
    assert any(SECRET.encode() in b.read_bytes() for b in blobs)  # on disk as it was: never redacted
    assert SECRET not in (kept / undo.INDEX).read_text()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in [*blobs, kept / undo.INDEX]} == {0o600}
    undone = await undo_plan.plan_undo(svc, run.run_id)
    shown = " ".join([undone.plan.generated_playbook or "", undone.plan.diff, *undone.plan.warnings,
                      undone.model_dump_json()])
    assert SECRET not in shown
    assert any(r.secret and r.path.endswith("app.conf") for r in undone.restores)
    assert (await approve_and_run(svc, undone.plan)).status == "succeeded"
    assert SECRET in (folder / "app.conf").read_text()  # restored exactly, secret included


async def test_the_undo_run_tool_is_exposed_annotated_and_answers(svc: AnsibleService, targets: Path) -> None:
    from fastmcp import Client

    from chiffon.orchestrator.server import create_orchestrator

    prepare(targets, "mcp")
    run = await run_approved(svc, "undo-files.yml", extra_vars={"undo_dir": "mcp"})
    async with Client(create_orchestrator(svc)) as client:
        tools = {t.name: t.annotations for t in await client.list_tools()}
        annotations = tools["ansible_undo_run"]
        assert annotations is not None and annotations.read_only_hint is False and annotations.destructive_hint is False
        reply = (await client.call_tool("ansible_undo_run", {"run_id": run.run_id})).structured_content
        refused = await client.call_tool("ansible_undo_run", {"run_id": "../../etc"}, raise_on_error=False)
    assert reply is not None and reply["plan"]["status"] == "pending_approval" and reply["run_id"] == run.run_id
    assert [x["module"] for x in reply["not_reversible"]] == ["ansible.builtin.command"]
    assert refused.is_error and "not a run id" in str(refused.content)


async def test_before_states_go_with_the_run_folder_after_retention(
        svc: AnsibleService, rt: Runtime, targets: Path) -> None:
    import time

    from chiffon.orchestrator.housekeeping import purge

    prepare(targets, "aged")
    run = await run_approved(svc, "undo-files.yml", extra_vars={"undo_dir": "aged"})
    folder = rt.settings.runs_dir / run.run_id
    assert list((folder / undo.FOLDER / undo.BLOBS).iterdir())
    old = time.time() - 40 * 86400
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (old, old), follow_symlinks=False)
    purged = await purge(rt.store, runs_dir=rt.settings.runs_dir, voice_dir=rt.settings.home / "no-voice",
                         chat_days=None, run_artifacts_days=30, speech_days=None)
    assert run.run_id in purged.run_artifacts and not folder.exists()
    with pytest.raises(InvalidInput, match="purged after retention.run_artifacts_days"):
        await undo_plan.plan_undo(svc, run.run_id)


async def test_content_over_the_diff_limit_is_listed_as_not_reversible(svc: AnsibleService, targets: Path) -> None:
    folder = targets / "ai" / "big"
    folder.mkdir(parents=True)
    (folder / "big.txt").write_text("x" * 63 + "\n" * 1 + ("y" * 63 + "\n") * 3200)  # 200 KiB of text
    (folder / "small.txt").write_text("small before\n")
    run = await run_approved(svc, "undo-big.yml")
    undone = await undo_plan.plan_undo(svc, run.run_id)
    assert [r.path.rsplit("/", 1)[-1] for r in undone.restores] == ["small.txt"]
    assert [x.task for x in undone.not_reversible] == ["Overwrite the big file"]
    assert "larger than Ansible's diff limit (max_diff_size" in undone.not_reversible[0].reason
