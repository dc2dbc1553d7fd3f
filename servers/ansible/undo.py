"""Undo, part one: what a real run changed that can be put back, kept in the run's folder as it happens.

A real run (:func:`servers.ansible.execution.execute`) goes through :func:`keeping`, which hands every raw
ansible-runner event to a :class:`Keeper` *before* it is masked: a before-state must restore a secret exactly, so
it is never rewritten by the redactor on disk. Part two, :mod:`servers.ansible.undo_plan`, turns what was kept into
a plan (``chiffon undo RUN``).

What is kept, from Ansible's ``--diff`` (every run uses it) of ``template``, ``copy``, ``lineinfile``,
``blockinfile``, ``replace``, ``ini_file`` and ``file``:

- a file that existed: its content (``diff.before``, the file's text as Ansible read it), and its mode, owner and
  group where they are known: from the diff's file-attributes entry (``lineinfile``, ``blockinfile``, ``file``
  report the attributes they change), from the result's own ``mode``/``uid``/``gid`` when the task set none
  (``template``/``copy`` keep an existing file's attributes), else from a read-only ``stat`` play run first in the
  run's own ansible-playbook call (:func:`stat_targets`: the paths the plan's check showed such a task changing, where
  the task sets
  ``mode``/``owner``/``group``, or may create the file: ``template``, ``copy`` and ``replace`` report no attribute
  diff, and ``lineinfile ... create: true`` reports an absent file and an empty one alike);
- a file, directory or link the run created (``template``/``copy`` with no ``before_header``, ``file`` from
  ``state: absent``, ``blockinfile``'s "File created", or the stat): to be removed;
- a ``file`` task's mode/owner/group change: the earlier values.

Not kept, each recorded as not reversible with the reason: content over Ansible's ``max_diff_size`` (100 KiB by
default) or binary, a result hidden by ``no_log`` or with no diff (``diff: false``, a directory copied), a file the
run deleted, and every other module (packages, commands, services, containers...).

On disk (``CHIFFON_HOME/runs/<run>/undo/``, folders 0700, files 0600, purged with the run folder after
``retention.run_artifacts_days``): ``before.jsonl`` (one record per change, task names masked, paths as they are)
and ``blobs/<sha256>`` (the exact bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from chiffon.servers.ansible import generated as generated_playbooks
from chiffon.servers.ansible.plays import load_yaml
from chiffon.shared.redact import redact_text

log = logging.getLogger(__name__)

FOLDER = "undo"  # in the run's folder
INDEX = "before.jsonl"
BLOBS = "blobs"
CONTENT_MODULES = frozenset({"template", "copy", "lineinfile", "blockinfile", "replace", "ini_file"})
RESTORABLE = CONTENT_MODULES | {"file"}
# where a short module name is one of the above (a module of another collection named ``copy`` is not)
_COLLECTIONS = ("ansible.builtin.", "ansible.legacy.", "community.general.")
ATTRS = ("mode", "owner", "group")
ATTR_ARGS = ("mode", "owner", "group")
HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,252}")  # used with fullmatch, as PATH and MODE
# what a path may hold to be written into a generated playbook: no Jinja ({ }), quotes, backslash or newline
PATH = re.compile(r"/[A-Za-z0-9_.@%+=,:~/ \-]{0,4095}")
MODE = re.compile(r"0?[0-7]{3,4}")
NOT_REVERSIBLE = {
    "command": "ran a command; what it changed is not known",
    "shell": "ran a command; what it changed is not known",
    "raw": "ran a command; what it changed is not known",
    "script": "ran a script; what it changed is not known",
    "expect": "ran a command; what it changed is not known",
    "package": "installed or removed packages; undo does not reinstall or remove them",
    "service": "changed a service's state; undo does not restart or stop it",
    "systemd": "changed a service's state; undo does not restart or stop it",
    "systemd_service": "changed a service's state; undo does not restart or stop it",
    "sysvinit": "changed a service's state; undo does not restart or stop it",
}
PACKAGE_MODULES = ("apt", "dnf", "dnf5", "yum", "pip", "npm", "gem", "snap", "apk", "pacman", "zypper",
                   "homebrew", "pkgng", "apt_repository", "deb822_repository", "yum_repository", "rpm_key",
                   "apt_key", "flatpak")


def module_name(action: str) -> str:
    """``template`` for ``ansible.builtin.template`` (and ``ini_file`` for ``community.general.ini_file``); other
    names as they are."""
    for prefix in _COLLECTIONS:
        if action.startswith(prefix):
            return action[len(prefix):]
    return action


def not_reversible_reason(module: str) -> str:
    """Why a change by ``module`` (short or fully qualified) is not put back by an undo."""
    short = module_name(module)
    if short in NOT_REVERSIBLE:
        return NOT_REVERSIBLE[short]
    last = module.rsplit(".", 1)[-1]
    if last in PACKAGE_MODULES or short in PACKAGE_MODULES:
        return "installed or removed packages; undo does not reinstall or remove them"
    if "docker" in module or "podman" in module or "container" in last or "compose" in last:
        return "changed containers; undo does not recreate or remove them"
    return f"{module or 'this module'} is not one undo can reverse (it restores files: " + \
        ", ".join(sorted(RESTORABLE)) + ")"


class NotKept(Exception):
    """A change whose before-state cannot be kept; ``str()`` says why."""


def _diffs(res: dict[str, Any]) -> list[dict[str, Any]]:
    diff = res.get("diff")
    return [d for d in (diff if isinstance(diff, list) else [diff]) if isinstance(d, dict)]


def _path_of(res: dict[str, Any], diffs: list[dict[str, Any]]) -> str:
    args = (res.get("invocation") or {}).get("module_args") or {}
    for value in (res.get("dest"), res.get("path"), args.get("dest"), args.get("path"), args.get("name")):
        if isinstance(value, str) and value.startswith("/"):
            return value
    for d in diffs:
        header = d.get("before_header")
        if isinstance(header, str) and header.startswith("/"):
            return header.removesuffix(" (content)").removesuffix(" (file attributes)")
    raise NotKept("the path it changed is not in Ansible's result")


def _attrs(values: dict[str, Any]) -> dict[str, Any]:
    """``{mode, owner, group}`` present in a diff's ``before`` (owner/group as numbers) or a stat (uid/gid)."""
    out: dict[str, Any] = {}
    mode = values.get("mode")
    if isinstance(mode, str) and MODE.fullmatch(mode):
        out["mode"] = mode.zfill(4)
    for key, alt in (("owner", "uid"), ("group", "gid")):  # a diff's owner is a uid; a result's is a name
        value = next((v for v in (values.get(key), values.get(alt))
                      if isinstance(v, int) and not isinstance(v, bool) and v >= 0), None)
        if value is not None:
            out[key] = value
    return out


def before_state(module: str, res: dict[str, Any], stat: dict[str, Any] | None) -> dict[str, Any]:
    """What to keep of one changed result of ``module`` (a :data:`RESTORABLE` short name): ``{path, action,
    content?, mode?, owner?, group?, note?}``, ``action`` one of ``content`` (put the content back), ``remove``
    (the run created it) or ``attrs`` (only mode/owner/group changed). ``stat``: the path's ``stat`` result from
    just before the run, when one was made (``{exists, mode, uid, gid}``).

    Raises:
        NotKept: the before-state is not in the result (the reason says why).
    """
    if res.get("censored"):
        raise NotKept("its result is hidden (no_log), so its before-state was not reported")
    diffs = _diffs(res)
    if not diffs:
        raise NotKept("Ansible reported no diff for it (diff: false, or a directory copied)")
    path = _path_of(res, diffs)
    if module == "file":
        return _file_state(path, diffs[0], res.get("state"))
    content = next((d for d in diffs if isinstance(d.get("before"), str) or "dst_larger" in d
                    or "dst_binary" in d), None)
    if content is None:
        raise NotKept(f"Ansible reported no content diff for {path}")
    if "dst_larger" in content:
        raise NotKept(f"{path} was larger than Ansible's diff limit (max_diff_size, {content['dst_larger']} "
                      "bytes), so its content was not kept")
    if "dst_binary" in content:
        raise NotKept(f"{path} was a binary file, which Ansible does not diff, so its content was not kept")
    args = (res.get("invocation") or {}).get("module_args") or {}
    before = str(content.get("before") or "")
    existed = _existed(module, res, content, before, stat)
    if existed is False:
        return {"path": path, "action": "remove"}
    kept: dict[str, Any] = {"path": path, "action": "content", "content": before}
    attrs = next((_attrs(d["before"]) for d in diffs if isinstance(d.get("before"), dict)), {})
    if stat is not None and stat.get("exists"):
        attrs = {**_attrs(stat), **attrs}
    elif module in ("template", "copy") and not any(args.get(k) is not None for k in ATTR_ARGS):
        attrs = {**_attrs(res), **attrs}  # an existing file keeps its attributes when the task sets none
    elif any(args.get(k) is not None for k in ATTR_ARGS) and not attrs:
        kept["note"] = "the task set its mode/owner/group and their earlier values are not known: only the content " \
                       "is put back"
    if existed is None:
        kept["note"] = "whether it existed before is not known (Ansible reports an absent file and an empty one " \
                       "alike): it is put back as an empty file"
    return {**kept, **attrs}


def _existed(module: str, res: dict[str, Any], content: dict[str, Any], before: str,
             stat: dict[str, Any] | None) -> bool | None:
    """Whether the file existed before the change; None when nothing says."""
    if stat is not None and "exists" in stat:
        return bool(stat["exists"])
    if module in ("template", "copy"):
        return "before_header" in content  # Ansible names the destination only when it exists
    if module == "blockinfile" and res.get("msg") == "File created":
        return False
    if before == "" and module in ("lineinfile", "blockinfile", "ini_file"):
        args = (res.get("invocation") or {}).get("module_args") or {}
        if args.get("create", module == "ini_file"):
            return None
    return True


def _file_state(path: str, diff: dict[str, Any], kind: Any) -> dict[str, Any]:
    before, after = diff.get("before"), diff.get("after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        raise NotKept(f"Ansible reported no state diff for {path}")
    was, now = before.get("state"), after.get("state")
    if was == "absent" and now not in (None, "absent"):
        return {"path": path, "action": "remove", "kind": now}
    if now == "absent":
        raise NotKept(f"it deleted {path}; what was there was not kept")
    attrs = _attrs(before)
    if not attrs:
        raise NotKept(f"only the timestamps of {path} changed (state: touch); they are not put back")
    return {"path": path, "action": "attrs", "kind": "directory" if kind == "directory" else "file", **attrs}


class Keeper:
    """Keeps the before-states of one real run in ``folder`` (``runs/<run>/undo``), fed each raw ansible-runner
    event from ansible-runner's thread, before masking (:func:`servers.ansible.runner.run_playbook`'s ``keep``).

    ``playbook``: the read-only stat playbook (:func:`stat_playbook`, its plays named ``play``) that runs first in
    the same ansible-playbook call; its results are the before-state of the first change of each path stat'ed.
    Never raises: a before-state that cannot be written is logged and the run goes on.
    """

    def __init__(self, folder: Path, playbook: Path | None = None, play: str = "") -> None:
        self.folder = folder
        self.playbook = playbook
        self.play = play
        self.stats: dict[tuple[str, str], dict[str, Any]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.seq = 0
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> bool:
        """Keep what ``event`` says; True when it is an event of the stat play (never one of the run's)."""
        data = event.get("event_data")
        # the play's name is not enough (a repo play can read it from the run folder and take it): its events also
        # come from chiffon's own playbook file, which no play of the repo's can claim
        own = self.playbook is not None and bool(self.play) and isinstance(data, dict) and \
            data.get("play") == self.play and data.get("playbook") == str(self.playbook)
        try:
            if own:
                self._stat(str(event.get("event", "")), data)  # type: ignore[arg-type]
            else:
                self._feed(event)
        except Exception as exc:  # never stop a run on the machines for its undo record
            log.warning("before-state not kept (%s: %s)", type(exc).__name__, redact_text(str(exc))[:300])
        return own

    def _stat(self, name: str, data: dict[str, Any]) -> None:
        res = data.get("res") or {}
        path = ((res.get("invocation") or {}).get("module_args") or {}).get("path")
        if name == "runner_on_ok" and isinstance(res.get("stat"), dict) and isinstance(path, str):
            self.stats[(str(data.get("host", "")), path)] = {k: res["stat"].get(k) for k in ("exists", "mode", "uid",
                                                                                              "gid")}

    def _feed(self, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        if name not in ("runner_on_ok", "runner_item_on_ok", "runner_on_failed", "runner_item_on_failed"):
            return
        data = event.get("event_data") or {}
        res = data.get("res") or {}
        if not res.get("changed") or (name in ("runner_on_ok", "runner_on_failed") and "results" in res):
            return  # unchanged, or a loop's summary (each item came on its own)
        action = str(data.get("resolved_action") or data.get("task_action") or "")
        host, module = str(data.get("host", "")), module_name(action)
        record: dict[str, Any] = {"host": host, "task": redact_text(str(data.get("task", "")))[:300],
                                  "module": action}
        if module not in RESTORABLE:
            self._write(record | {"reversible": False, "reason": not_reversible_reason(action)})
            return
        delegated = res.get("_ansible_delegated_vars") or {}
        if delegated.get("ansible_delegated_host") not in (None, host) or data.get("delegate_to"):
            # the change landed on another machine than the host the event names: never restore it onto this one
            self._write(record | {"reversible": False, "reason": f"it ran on a delegated host "
                                  f"({delegated.get('ansible_delegated_host') or data.get('delegate_to')}), not {host}"})
            return
        try:
            if res.get("censored"):
                raise NotKept("its result is hidden (no_log), so its before-state was not reported")
            path = _path_of(res, _diffs(res))
            key = (host, path)
            stat = self.stats.get(key) if key not in self.seen else None
            self.seen.add(key)
            state = before_state(module, res, stat)
        except NotKept as why:
            self._write(record | {"reversible": False, "reason": redact_text(str(why))})
            return
        content = state.pop("content", None)
        if content is not None:
            try:
                data_bytes = content.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                self._write(record | {"reversible": False, "reason": f"the text of {path} could not be kept as bytes"})
                return
            # sha1: what the copy module checks the transferred file against (its ``checksum``); sha256 pins it
            state |= {"blob": self._blob(data_bytes), "sha1": hashlib.sha1(data_bytes).hexdigest(),
                      "size": len(data_bytes), "secret": redact_text(content) != content}
        self._write(record | {"reversible": True} | state)

    def _blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        folder = self.folder / BLOBS
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # parents=True alone would not apply the mode
        folder.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(folder / sha, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        return sha

    def _write(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.folder / INDEX, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(json.dumps({"seq": self.seq, **record}) + "\n")


def _job_events(check_dir: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(check_dir.glob("artifacts/*/job_events/*.json")):
        with contextlib.suppress(OSError, ValueError):
            events.append(json.loads(path.read_text()))
    return events


def stat_targets(check_dir: Path) -> dict[str, list[str]]:
    """``{host: [path, ...]}`` to stat just before a run: from the plan's check (``runs/<plan>-check``), each path a
    file task was predicted to change where Ansible's diff will not say the file's earlier mode/owner/group (the
    task sets them: ``template``/``copy``/``replace``/``ini_file`` report no attribute diff) or whether it existed
    (``create: true`` over an empty or absent file). Hosts and paths outside :data:`HOST`/:data:`PATH` are left out.
    """
    targets: dict[str, list[str]] = {}
    for event in _job_events(check_dir):
        data = event.get("event_data") or {}
        res = data.get("res") or {}
        module = module_name(str(data.get("resolved_action") or data.get("task_action") or ""))
        if event.get("event") not in ("runner_on_ok", "runner_item_on_ok") or not res.get("changed") \
                or module not in CONTENT_MODULES or (res.get("_ansible_delegated_vars") or {}).get(
                    "ansible_delegated_host") not in (None, data.get("host")):
            continue  # a delegated change is not reversible: nothing to stat on this host
        args = (res.get("invocation") or {}).get("module_args") or {}
        diffs = _diffs(res)
        empty = any(d.get("before") == "" for d in diffs)
        sets_attrs = any(args.get(k) is not None for k in ATTR_ARGS) and module not in ("lineinfile", "blockinfile")
        if not (sets_attrs or (empty and args.get("create", module == "ini_file"))):
            continue
        with contextlib.suppress(NotKept):
            path, host = _path_of(res, diffs), str(data.get("host", ""))
            if HOST.fullmatch(host) and PATH.fullmatch(path) and path not in targets.get(host, []):
                targets.setdefault(host, []).append(path)
    return targets


def plays_become(path: Path) -> bool:
    """Whether a play of the playbook at ``path`` sets ``become`` (true, yes, or a template): the plays chiffon
    writes for the same hosts do too. False when it cannot be read."""
    try:
        plays = load_yaml(path.read_text(errors="replace"))
    except OSError:
        return False
    return become_of(plays)


def become_of(plays: Any) -> bool:
    """:func:`plays_become` for parsed YAML."""
    if not isinstance(plays, list):
        return False
    for play in plays:
        value = play.get("become") if isinstance(play, dict) else None
        if value is True or (isinstance(value, str) and value.strip().lower() not in ("", "false", "no", "0")):
            return True
    return False


def stat_playbook(targets: dict[str, list[str]], become: bool, play: str) -> str:
    """A read-only playbook: one play per host (each named ``play``), an ``ansible.builtin.stat`` per path, tagged
    ``always`` (the run's ``--tags`` select it too), every error and unreachable host ignored (a stat that fails
    leaves that before-state's attributes unknown; the host stays in the run)."""
    plays = []
    for host, paths in sorted(targets.items()):
        plays.append({
            "name": play, "hosts": host, "gather_facts": False, **({"become": True} if become else {}),
            "tasks": [{"name": f"stat {n}", "ansible.builtin.stat": {
                "path": path, "follow": False, "get_checksum": False, "get_mime": False, "get_attributes": False},
                "ignore_errors": True, "ignore_unreachable": True, "tags": ["always"]}
                for n, path in enumerate(paths)]})
    return yaml.safe_dump(plays, sort_keys=False)


RunPlaybook = Callable[..., Awaitable[Any]]  # servers.ansible.runner.run_playbook


def keeper_for(private_dir: Path, plan_id: str, repo: Path, playbook: str) -> Keeper:
    """The :class:`Keeper` of a real run of plan ``plan_id`` in ``private_dir``, with its stat playbook staged in
    ``<private_dir>/undo/stat`` (beside links to the playbook's ``group_vars``/``host_vars``) when the plan's check
    (``<runs>/<plan_id>-check``) shows paths to stat (:func:`stat_targets`). Blocking (reads the check's events)."""
    folder = private_dir / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    targets = stat_targets(private_dir.parent / f"{plan_id}-check")
    if not targets:
        return Keeper(folder)
    main = Path(playbook) if os.path.isabs(playbook) else repo / playbook
    play = f"chiffon undo {secrets.token_hex(5)}: stat before the run"
    staged = generated_playbooks.stage(main.parent, folder / "stat", "stat.yml",
                                       stat_playbook(targets, plays_become(main), play))
    return Keeper(folder, staged, play)


def keeping(run: RunPlaybook, plan_id: str) -> RunPlaybook:
    """``run`` (:func:`servers.ansible.runner.run_playbook`) for a real run of plan ``plan_id`` that keeps its
    before-states in ``<private_dir>/undo`` (:class:`Keeper`); same arguments, same result.

    When the plan's check shows tasks whose earlier mode/owner or existence Ansible's diff will not report
    (:func:`stat_targets`), a read-only ``stat`` of those paths runs first, in the same ansible-playbook call (same
    inventory, limit, connection and passwords; a few tenths of a second per host, no second Ansible start).
    """
    async def wrapped(repo: Path, playbook: str, inventory: Path, private_dir: Path, **kwargs: Any) -> Any:
        keep = await asyncio.to_thread(keeper_for, private_dir, plan_id, repo, playbook)
        return await run(repo, playbook, inventory, private_dir, keep=keep, **kwargs)

    return wrapped
