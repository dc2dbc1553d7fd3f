"""Undo, part two: ``chiffon undo RUN`` turns the before-states a run kept (:mod:`servers.ansible.undo`) into a plan.

The plan's playbook is generated (:mod:`servers.ansible.generated`, no role), shown and approved like any other,
checked in check mode and run by the same ``approve``/``execute`` path. It puts back, on exactly the hosts where
they changed, each path's earliest before-state in the run: its content (``copy`` from the kept file, with its
mode/owner/group where they are known), removes what the run created (``file state=absent``), or puts back a
``file`` task's mode/owner/group.

What runs is what was approved: the playbook names each kept file by path and pins its bytes twice, in the text the
human approves. A first play asserts each file's SHA-256 (read on the controller) before anything changes, and
every ``copy`` passes the file's SHA-1 as ``checksum``, which the copy module checks on the target against the
bytes it received before moving them into place; a file edited after approval fails the run, nothing of it
written. No content is in the playbook, and a before-state that held a known secret value (masked by value when the
run kept it) is restored with ``diff: false``: the plan's check and the run show no diff for it.

Changes that cannot be put back (packages, commands, services, containers, other modules, deleted files, content
over Ansible's diff limit) are listed in the plan's warnings and in :attr:`UndoPlan.not_reversible`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from chiffon.servers.ansible import plans, undo
from chiffon.servers.ansible.events import EventCallback
from chiffon.servers.ansible.generated import Generated
from chiffon.servers.ansible.plays import load_yaml
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput, PlanNotFound, PlanStateError, RepoError
from chiffon.shared.redact import redact_text
from chiffon.shared.runtime import Runtime

RUN_ID = re.compile(r"run-[0-9a-f]{10}")
MAX_WARNINGS = 30  # not-reversible lines in the plan's warnings; the full list is in UndoPlan.not_reversible


class Restore(BaseModel):
    """One path the undo puts back on one host."""

    host: str
    path: str = Field(description="File or folder (secret values masked).")
    action: Literal["content", "remove", "attrs"] = Field(
        description="content: its earlier content (and mode/owner/group when known) is put back; remove: the run "
                    "created it, so it is removed; attrs: only its mode/owner/group are put back.")
    mode: str | None = None
    owner: int | None = Field(None, description="uid put back, when known.")
    group: int | None = Field(None, description="gid put back, when known.")
    secret: bool = Field(False, description="Its earlier content holds a secret value: no diff is shown for it.")
    note: str | None = Field(None, description="What is not put back exactly, when something is not.")


class NotReversible(BaseModel):
    """A change the undo does not put back, and why."""

    host: str
    task: str
    module: str
    reason: str


class UndoPlan(BaseModel):
    """The plan that undoes a run: a generated playbook awaiting approval, what it puts back and what it cannot."""

    run_id: str = Field(description="The run this plan undoes.")
    plan: plans.Plan
    restores: list[Restore]
    not_reversible: list[NotReversible] = Field(description="Changes of the run that cannot be put back this way.")


@dataclass
class _Path:
    """One (host, path) to put back: the merge of every kept record of it, earliest first."""

    host: str
    path: str
    action: str
    first_seq: int
    blob: str | None = None
    sha1: str | None = None
    kind: str = "file"
    secret: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def view(self) -> Restore:
        return Restore(host=self.host, path=redact_text(self.path), action=self.action,  # type: ignore[arg-type]
                       mode=self.attrs.get("mode"), owner=self.attrs.get("owner"), group=self.attrs.get("group"),
                       secret=self.secret, note="; ".join(self.notes) or None)


def validate_run_id(run_id: str) -> str:
    """``run_id`` when it is a run id (``run-`` and 10 hex digits).

    Raises:
        InvalidInput: anything else (``../``, a path, a plan id).
    """
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise InvalidInput("run", f"{str(run_id)[:80]!r} is not a run id: `run-` and 10 hex digits, as `chiffon status "
                                  "PLAN` and the `run_id` of run/execute --json show it")
    return run_id


def read_kept(folder: Path) -> list[dict[str, Any]]:
    """The records of ``folder/before.jsonl`` in order; [] when the run kept none."""
    path = folder / undo.INDEX
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return sorted(records, key=lambda r: int(r.get("seq", 0)))


def merge(records: Iterable[dict[str, Any]]) -> tuple[list[_Path], list[NotReversible]]:
    """Per (host, path), the before-state to put back: the earliest record decides whether it existed (``remove``),
    its content is the earliest content kept, each of mode/owner/group the earliest value kept. Not-reversible
    records come back once per (host, task, module, reason)."""
    paths: dict[tuple[str, str], _Path] = {}
    lost: dict[tuple[str, str, str, str], NotReversible] = {}
    for r in records:
        if not r.get("reversible"):
            item = NotReversible(host=str(r.get("host", "")), task=str(r.get("task", "")),
                                 module=str(r.get("module", "")), reason=str(r.get("reason", "")))
            lost.setdefault((item.host, item.task, item.module, item.reason), item)
            continue
        key = (str(r["host"]), str(r["path"]))
        attrs = {k: r[k] for k in undo.ATTRS if r.get(k) is not None}
        now = paths.get(key)
        if now is None:
            now = paths[key] = _Path(host=key[0], path=key[1], action=str(r["action"]), first_seq=int(r["seq"]),
                                     kind=str(r.get("kind") or "file"))
        elif now.action == "remove":
            continue  # the run created it: whatever came after goes with it
        if r["action"] == "content" and now.blob is None:
            now.action, now.blob, now.sha1, now.secret = "content", r.get("blob"), r.get("sha1"), bool(r.get("secret"))
        if r.get("note"):
            now.notes.append(str(r["note"]))
        now.attrs = {**attrs, **now.attrs}
    return sorted(paths.values(), key=lambda p: p.first_seq), list(lost.values())


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def usable(items: list[_Path], blobs: Path, known_hosts: set[str] | None) -> tuple[list[_Path], list[NotReversible]]:
    """``items`` that can be written into a playbook, and the others as not reversible: a host or path with
    characters chiffon never writes into a playbook (:data:`undo.HOST`, :data:`undo.PATH`, ``..``), a path holding
    a secret value, a host the inventory no longer has, a kept file gone or changed since the run."""
    ok, refused = [], []
    for item in items:
        why = None
        if not undo.HOST.fullmatch(item.host):
            why = "its host name holds characters chiffon does not write into a playbook"
        elif not undo.PATH.fullmatch(item.path) or ".." in item.path.split("/"):
            why = "its path holds characters chiffon does not write into a playbook"
        elif redact_text(item.path) != item.path:
            why = "its path holds a secret value"
        elif known_hosts is not None and item.host not in known_hosts:
            why = f"{item.host} is not in the inventory any more"
        elif item.action == "content" and (item.blob is None or _sha256(blobs / item.blob) != item.blob):
            why = "its kept before-state is gone (purged with the run folder after retention.run_artifacts_days) " \
                  "or was changed since the run"
        elif item.attrs.get("mode") is not None and not undo.MODE.fullmatch(str(item.attrs["mode"])):
            item.attrs.pop("mode")
        if why is None:
            ok.append(item)
        else:
            refused.append(NotReversible(host=item.host, task=f"put back {redact_text(item.path)}", module="undo",
                                         reason=why))
    return ok, refused


def _attr_args(attrs: dict[str, Any]) -> dict[str, str]:
    return {k: str(attrs[k]) for k in undo.ATTRS if attrs.get(k) is not None}


def _tasks(run_id: str, items: list[_Path], blobs: Path) -> list[dict[str, Any]]:
    """The tasks of one host's play, the latest change first (a file the run wrote inside a folder it created
    goes before the folder), each guarded by ``inventory_hostname``: a host named like a group never widens it."""
    tasks: list[dict[str, Any]] = []
    for item in sorted(items, key=lambda p: -p.first_seq):
        if item.action == "remove":
            task: dict[str, Any] = {"name": f"Remove {item.path} ({run_id} created it)",
                                    "ansible.builtin.file": {"path": item.path, "state": "absent"}}
        elif item.action == "content":
            task = {"name": f"Put back {item.path} as it was before {run_id}",
                    "ansible.builtin.copy": {"src": str(blobs / str(item.blob)), "dest": item.path,
                                             "checksum": item.sha1, "force": True, **_attr_args(item.attrs)}}
            if item.secret:
                task["diff"] = False
        else:
            task = {"name": f"Put back the mode and owner of {item.path} as before {run_id}",
                    "ansible.builtin.file": {"path": item.path,
                                             "state": "directory" if item.kind == "directory" else "file",
                                             # a link swapped in since the run must not redirect a chmod/chown
                                             "follow": False, **_attr_args(item.attrs)}}
        task["when"] = f"inventory_hostname == '{item.host}'"
        tasks.append(task)
    return tasks


def playbook_text(run_id: str, plan_id: str, items: list[_Path], blobs: Path, *, become: bool) -> str:
    """The undo playbook: a play asserting every kept file's SHA-256 before anything changes, then one play per
    host putting its paths back."""
    hosts = sorted({i.host for i in items})
    header = (f"# chiffon undo of {run_id} (plan {plan_id}): puts back what that run changed, from the "
              "before-states it kept.\n")
    plays: list[dict[str, Any]] = []
    pinned = {str(i.blob): i for i in items if i.action == "content" and i.blob}
    if pinned:
        plays.append({
            "name": f"Check the before-states {run_id} kept are the ones approved", "hosts": ":".join(hosts),
            "gather_facts": False, "any_errors_fatal": True,
            "tasks": [{"name": f"The kept before-state of {i.path} on {i.host} is unchanged",
                       "ansible.builtin.assert": {
                           "that": [f"lookup('ansible.builtin.file', '{blobs / blob}', rstrip=false) | hash('sha256') "
                                    f"== '{blob}'"],
                           "fail_msg": f"{blobs / blob} changed after the plan was approved; nothing was put back. "
                                       "Plan the undo again.",
                           "quiet": True},
                       "run_once": True} for blob, i in pinned.items()]})
    for host in hosts:
        plays.append({"name": f"Undo {run_id} on {host}", "hosts": host, "gather_facts": False,
                      **({"become": True} if become else {}),  # never false: ansible.cfg's become=True still holds
                      "tasks": _tasks(run_id, [i for i in items if i.host == host], blobs)})
    return header + yaml.safe_dump(plays, sort_keys=False, width=4096)


def _warnings(run_id: str, row: dict[str, Any], items: list[_Path], lost: list[NotReversible]) -> tuple[str, ...]:
    hosts = sorted({i.host for i in items})
    rest = (f"{len(lost)} change(s) of that run are not reversible and are listed below" if lost
            else "nothing else of that run needs putting back")
    out = [f"undoes {run_id} (plan {row['plan_id']}, {row['playbook']}): puts back {len(items)} path(s) on "
           f"{', '.join(hosts)}; {rest}"]
    for item in items:
        where = f"{redact_text(item.path)} on {item.host}"
        if item.action == "remove" and item.kind == "directory":
            out.append(f"removes the directory {where} that {run_id} created, with everything in it now")
        if item.secret:
            out.append(f"the earlier content of {where} holds a secret value: no diff is shown for it")
        mode = str(item.attrs.get("mode") or "")
        if mode.isdigit() and int(mode, 8) & 0o7000:
            out.append(f"sets {where} to mode {mode}: setuid, setgid or sticky; check that the run really changed "
                       "it from this")
        out += [f"{where}: {note}" for note in dict.fromkeys(item.notes)]
    shown = [f"not reversible: {x.task} ({x.module}) on {x.host}: {x.reason}" for x in lost[:MAX_WARNINGS]]
    if len(lost) > MAX_WARNINGS:
        shown.append(f"not reversible: {len(lost) - MAX_WARNINGS} more (the undo's --json lists them all)")
    return tuple(redact_text(w) for w in [*out, *shown])


async def _the_run(rt: Runtime, run_id: str) -> dict[str, Any]:
    row = await rt.store.pool.fetchrow(
        "SELECT r.id, r.status, r.plan_id, p.repo, p.playbook, p.service, p.inventory, p.snapshot_digest, "
        "p.generated_playbook FROM runs r JOIN plans p ON p.id = r.plan_id WHERE r.id=$1", run_id)
    if row is None:
        raise PlanNotFound(f"no run {run_id!r}; `chiffon status PLAN` shows the run id of a plan's run")
    if row["status"] == "running":
        raise PlanStateError(f"run {run_id} has not ended; undo it once it has (a run whose process stopped is "
                             f"recorded by `chiffon status {row['plan_id']}`). Nothing was planned.")
    return dict(row)


def _become(rt: Runtime, row: dict[str, Any]) -> bool:
    """Whether the undone run's plays used ``become`` (its generated text, or its playbook in its snapshot)."""
    if row["generated_playbook"]:
        return undo.become_of(load_yaml(row["generated_playbook"]))
    if row["snapshot_digest"]:
        return undo.plays_become(rt.settings.snapshots_dir / row["snapshot_digest"] / "tree" / row["playbook"])
    return False


async def plan_undo(svc: AnsibleService, run_id: str, *, on_event: EventCallback | None = None) -> UndoPlan:
    """A plan (pending approval, with a check-mode diff) that puts back what run ``run_id`` changed, from the
    before-states it kept, on the repo and inventory of the run's plan.

    Raises:
        InvalidInput: ``run_id`` is not a run id, or the run kept nothing that can be put back (each change is
            named with its reason; nothing is stored).
        PlanNotFound: no such run.
        PlanStateError: the run has not ended.
        RepoError: the run's repo is gone.
    """
    rt = svc.rt
    run_id = validate_run_id(run_id)
    row = await _the_run(rt, run_id)
    folder = rt.settings.runs_dir / run_id / undo.FOLDER
    items, lost = merge(await asyncio.to_thread(read_kept, folder))
    catalog = await svc.catalog(Path(row["repo"]), inventory=row["inventory"] or None)
    groups: dict[str, list[str]] | None = None
    if catalog.inventory_choice is not None:
        try:
            groups = await asyncio.to_thread(catalog.groups)
        except RepoError:
            groups = None
    known = set(groups.get("all", [])) | {h for hs in groups.values() for h in hs} if groups is not None else None
    items, refused = await asyncio.to_thread(usable, items, folder / undo.BLOBS, known)
    lost += refused
    if not items:
        reasons = "; ".join(f"{x.task} ({x.module}) on {x.host}: {x.reason}" for x in lost[:5])
        raise InvalidInput("run", f"run {run_id} kept nothing that can be put back"
                                  + (f": {redact_text(reasons)}" if reasons else
                                     " (it changed no file undo restores, it ran before undo existed, or its folder "
                                     "was purged after retention.run_artifacts_days)")
                                  + ". Nothing was planned.")
    text = playbook_text(run_id, row["plan_id"], items, folder / undo.BLOBS, become=_become(rt, row))
    generated = Generated(f"undo-{run_id}.yml", text, None, service=row["service"] or "",
                          warnings=_warnings(run_id, row, items, lost))
    plan = await plans.create_plan(rt, catalog, generated.name, request=f"undo {run_id}", generated=generated,
                                   on_event=on_event)
    return UndoPlan(run_id=run_id, plan=plan, restores=[i.view() for i in items], not_reversible=lost)
