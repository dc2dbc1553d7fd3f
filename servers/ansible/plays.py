"""Static reading of playbooks and task files: plays, tasks, and what each play applies.

A file is a playbook when its YAML is a non-empty list of plays: mappings with
``hosts`` and at least one of ``tasks``/``roles``/``pre_tasks``/``post_tasks``/``handlers``,
or an ``import_playbook``. That is how Ansible itself tells them apart from vars files,
compose files, CI workflows or Taskfiles, which all live beside playbooks in real repos.

Nothing is templated or executed; ``!vault`` and ``!unsafe`` values are read as plain text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chiffon.servers.ansible.containers import containers_in_vars, containers_of

VERBS = ("deploy", "install", "setup", "configure", "update", "upgrade", "backup", "cleanup", "remove", "restart",
         "play", "run")
TASK_KEYWORDS = {
    "name", "when", "loop", "loop_control", "register", "tags", "become", "become_user", "become_method", "vars",
    "notify", "changed_when", "failed_when", "check_mode", "diff", "ignore_errors", "delegate_to",
    "run_once", "args", "environment", "no_log", "until", "retries", "delay", "with_items", "with_dict",
    "with_fileglob", "with_first_found", "with_together", "with_nested", "with_subelements", "with_sequence",
    "block", "rescue", "always", "listen", "throttle", "timeout", "any_errors_fatal", "module_defaults",
    "delegate_facts", "local_action", "ignore_unreachable", "collections", "debugger", "connection", "port",
    "remote_user", "action",
}
PLAY_SECTIONS = ("pre_tasks", "roles", "tasks", "post_tasks", "handlers")
ROLE_MODULES = {"import_role", "include_role", "ansible.builtin.import_role", "ansible.builtin.include_role"}
TASKS_MODULES = {"import_tasks", "include_tasks", "include", "ansible.builtin.import_tasks",
                 "ansible.builtin.include_tasks"}
PLAYBOOK_IMPORTS = {"import_playbook", "ansible.builtin.import_playbook"}

# What a --tags entry and a --limit pattern may contain: every tag or limit chiffon passes to Ansible matches.
TAG_RE = re.compile(r"^[A-Za-z0-9_.:@+\-]{1,100}$")
LIMIT_RE = re.compile(r"^[A-Za-z0-9_.:,!&*\-\[\] ]{1,200}$")

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TolerantLoader(_Loader):  # type: ignore[misc, valid-type]
    """A safe loader (libyaml when present) that reads Ansible's ``!unsafe`` / ``!vault`` tags as plain values."""


_TolerantLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
)


def load_yaml(text: str) -> Any:
    """Parse ``text`` with the tolerant safe loader; None when it is not valid YAML."""
    try:
        return yaml.load(text, Loader=_TolerantLoader)
    except yaml.YAMLError:
        return None


def as_list(value: Any) -> list[str]:
    """Ansible's list-or-comma-string fields (``tags: docker,jellyfin``, ``when: a``) as a list of strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [str(value)]


def conditions(value: Any) -> list[str]:
    """``when`` as a list of expressions (a string is one expression, commas and all)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value).strip()]


@dataclass(frozen=True)
class Task:
    """One task as written: its name, module and module arguments (untemplated)."""

    name: str
    module: str
    args: dict[str, Any] = field(default_factory=dict)
    keywords: frozenset[str] = frozenset()
    check_mode: Any = None  # the task's check_mode keyword as written (False: runs for real in check mode)
    delegate_to: str | None = None
    tags: tuple[str, ...] = ()  # the task's own tags and its blocks' (not the play's)


@dataclass(frozen=True)
class Application:
    """Something a play (or a role's ``tasks/main.yml``) applies: a role or a task file.

    ``tags`` and ``when`` are the entry's own plus everything it inherits (play, block).
    """

    kind: str  # "role" or "tasks"
    name: str  # role name as written (``jellyfin``, ``containers/jellyfin``) or task file path as written
    tags: tuple[str, ...]
    when: tuple[str, ...]
    hosts: str
    play: str


def service_of(stem: str) -> str:
    """``deploy-uptime-kuma`` -> ``uptime-kuma``; ``geerlingguy.docker`` -> ``docker``; else the stem."""
    stem = stem.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    for verb in VERBS:
        if stem.startswith(verb + "-") or stem.startswith(verb + "_"):
            return stem[len(verb) + 1 :]
    return stem


def _module_of(item: dict[str, Any]) -> str:
    return next((str(k) for k in item if k not in TASK_KEYWORDS), "")


def walk_tasks(items: Any, *, tags: tuple[str, ...] = (), when: tuple[str, ...] = (), hosts: str = "",
               play: str = "", inherited_check_mode: Any = None,
               own_tags: tuple[str, ...] = (),
               variables: dict[str, Any] | None = None) -> tuple[list[Task], list[Application]]:
    """Tasks of a task list (blocks flattened, their ``check_mode`` inherited) and the roles/task files it
    imports or includes. ``own_tags``: the enclosing blocks' tags (a task's ``tags`` are these and its own).
    ``variables``: the play's ``vars``, so that ``include_role: {name: "{{ item }}"}`` over ``loop: "{{
    roles_list }}"`` is one role per item of that list."""
    tasks: list[Task] = []
    applied: list[Application] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        item_tags = tags + tuple(as_list(item.get("tags")))
        item_own = own_tags + tuple(as_list(item.get("tags")))
        item_when = when + tuple(conditions(item.get("when")))
        if any(k in item for k in ("block", "rescue", "always")):
            for nested in ("block", "rescue", "always"):
                more, more_applied = walk_tasks(item.get(nested), tags=item_tags, when=item_when, hosts=hosts,
                                                play=play,
                                                inherited_check_mode=item.get("check_mode", inherited_check_mode),
                                                own_tags=item_own, variables=variables)
                tasks.extend(more)
                applied.extend(more_applied)
            continue
        module = _module_of(item)
        if not module:
            continue
        value = item[module]
        args = value if isinstance(value, dict) else {"_raw": value}
        if module in ROLE_MODULES and args.get("name"):
            applied_tags = as_list((args.get("apply") or {}).get("tags")) if isinstance(args.get("apply"), dict) else []
            for each, value in _looped(str(args["name"]).strip(), item, variables):
                extra = tuple(_substitute(t, item, value) for t in applied_tags)
                applied.append(Application("role", each, tuple(t for t in item_tags + extra if "{{" not in t),
                                           item_when, hosts, play))
        elif module in TASKS_MODULES:
            target = args.get("file", args.get("_raw"))
            if isinstance(target, str) and target:
                for each, _ in _looped(target.strip(), item, variables):
                    applied.append(Application("tasks", each, item_tags, item_when, hosts, play))
        tasks.append(Task(str(item.get("name", "")), module, args, frozenset(map(str, item)),
                          item.get("check_mode", inherited_check_mode),
                          str(item["delegate_to"]) if item.get("delegate_to") else None,
                          tuple(dict.fromkeys(item_own))))
    return tasks, applied


def _loop_var(item: dict[str, Any]) -> str:
    control = item.get("loop_control")
    return str(control.get("loop_var") or "item") if isinstance(control, dict) else "item"


def _substitute(text: str, item: dict[str, Any], value: str | None) -> str:
    if value is None:
        return text
    return re.sub(r"\{\{\s*" + re.escape(_loop_var(item)) + r"\s*\}\}", value, text)


def _looped(target: str, item: dict[str, Any], variables: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    """``tasks/{{ item }}.yml`` (or ``{{ role_item }}`` with ``loop_control.loop_var``) over a ``loop`` /
    ``with_items`` list, literal or a play variable holding one (``loop: "{{ roles_list }}"``), lists joined
    with ``+`` -> ``[(path, item), ...]``; else ``[(target, None)]``."""
    values = item.get("loop", item.get("with_items"))
    if isinstance(values, str) and variables:
        names = re.fullmatch(r"\{\{\s*([\w\s+]+?)\s*\}\}", values.strip())
        parts = [variables.get(n.strip()) for n in names.group(1).split("+")] if names else []
        values = [v for part in parts if isinstance(part, list) for v in part] if parts and all(
            isinstance(part, list) for part in parts) else None
    pattern = r"\{\{\s*" + re.escape(_loop_var(item)) + r"\s*\}\}"
    if re.search(pattern, target) and isinstance(values, list) and values and all(isinstance(v, str) for v in values):
        return [(re.sub(pattern, v, target), v) for v in values if "{{" not in v]
    return [(target, None)]


def _bare_play(entry: Any) -> bool:
    """A play with ``hosts`` and no task section (a fact-gathering play: ``gather_facts: true``, ``tags:
    always``); it counts only beside real plays."""
    return isinstance(entry, dict) and "hosts" in entry and isinstance(entry.get("hosts"), (str, list))


def is_play(entry: Any) -> bool:
    """A play mapping: ``hosts`` with a task section, or an ``import_playbook``."""
    if not isinstance(entry, dict):
        return False
    if any(k in entry for k in PLAYBOOK_IMPORTS):
        return True
    return "hosts" in entry and any(k in entry for k in PLAY_SECTIONS)


@dataclass(frozen=True)
class Play:
    """One play of a playbook as written: its name, ``hosts``, own tags, the roles it applies and its task names.

    A play with tags of its own is a unit (``teardown.yml`` with one play per service, each tagged with the
    service's name: ``--tags jellyfin`` runs that play).
    """

    index: int
    name: str
    hosts: str
    tags: tuple[str, ...]
    roles: tuple[str, ...]
    task_names: tuple[str, ...]
    task_tags: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (tag set on tasks of this play, those tasks' names)


def tags_of_tasks(tasks: list[Task] | tuple[Task, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``((tag, task names), ...)`` for the tags set on tasks or blocks (``tags: packages`` on three tasks of
    an update play): each selects those tasks with ``--tags``."""
    found: dict[str, list[str]] = {}
    for task in tasks:
        for tag in task.tags:
            found.setdefault(tag, []).append(task.name or task.module)
    return tuple((tag, tuple(dict.fromkeys(names))) for tag, names in found.items())


@dataclass(frozen=True)
class Playbook:
    """One playbook. ``name`` is its path relative to the repo root."""

    name: str
    path: Path
    description: str
    service: str
    tags: tuple[str, ...]
    host_patterns: tuple[str, ...]
    play_names: tuple[str, ...]
    tasks: tuple[Task, ...]
    variables: tuple[str, ...]
    applies: tuple[Application, ...] = ()
    imports: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    plays: tuple[Play, ...] = ()
    containers: tuple[str, ...] = ()  # containers and compose services its own tasks and vars name

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: name, description, service, tags, hosts, task count."""
        return {
            "name": self.name,
            "description": self.description,
            "service": self.service,
            "tags": list(self.tags),
            "hosts": list(self.host_patterns),
            "tasks": len(self.tasks),
        }


def _first_comment(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("", "---") or set(stripped) <= {"#"}:
            continue
        return stripped.lstrip("#").strip() if stripped.startswith("#") else ""
    return ""


def _roles_of(play: dict[str, Any], play_tags: tuple[str, ...], play_when: tuple[str, ...], hosts: str,
              name: str) -> list[Application]:
    found = []
    for entry in play.get("roles") or []:
        if isinstance(entry, str):
            found.append(Application("role", entry, play_tags, play_when, hosts, name))
        elif isinstance(entry, dict) and (role := entry.get("role") or entry.get("name")):
            found.append(Application("role", str(role), play_tags + tuple(as_list(entry.get("tags"))),
                                     play_when + tuple(conditions(entry.get("when"))), hosts, name))
    return found


def parse_playbook(root: Path, path: Path, text: str | None = None) -> Playbook | None:
    """Parse one file; None when it is not a playbook (vars file, compose file, CI workflow...)."""
    text = path.read_text(errors="replace") if text is None else text
    if "hosts" not in text and "import_playbook" not in text:
        return None  # cheap filter: most YAML in a repo is not a playbook
    data = load_yaml(text)
    if not isinstance(data, list) or not data or not all(is_play(p) or _bare_play(p) for p in data) or \
            not any(is_play(p) for p in data):
        return None
    tags: list[str] = []
    hosts: list[str] = []
    names: list[str] = []
    tasks: list[Task] = []
    variables: list[str] = []
    applies: list[Application] = []
    imports: list[str] = []
    prompts: list[str] = []
    plays: list[Play] = []
    containers: list[str] = []
    for index, play in enumerate(data):
        for key in PLAYBOOK_IMPORTS:
            if isinstance(play.get(key), str):
                imports.append(play[key])
        play_tags = tuple(as_list(play.get("tags")))
        play_when = tuple(conditions(play.get("when")))
        tags.extend(play_tags)
        host = ",".join(as_list(play.get("hosts"))) if "hosts" in play else ""  # a YAML list of patterns too
        if host:
            hosts.append(host)
        name = str(play.get("name") or "")
        if name:
            names.append(name)
        if isinstance(play.get("vars"), dict):
            variables.extend(map(str, play["vars"]))
            containers.extend(containers_in_vars(play["vars"]))
        for prompt in play.get("vars_prompt") or []:
            if isinstance(prompt, dict) and prompt.get("name"):
                prompts.append(str(prompt["name"]))
        play_roles = _roles_of(play, play_tags, play_when, host, name)
        applies.extend(play_roles)
        play_tasks: list[Task] = []
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            more, more_applied = walk_tasks(play.get(section), tags=play_tags, when=play_when, hosts=host, play=name,
                                            inherited_check_mode=play.get("check_mode"),
                                            variables=play["vars"] if isinstance(play.get("vars"), dict) else None)
            tasks.extend(more)
            play_tasks.extend(more)
            if section != "handlers":
                applies.extend(more_applied)
                play_roles.extend(a for a in more_applied if a.kind == "role")
        if host:
            plays.append(Play(index, name, host, play_tags, tuple(dict.fromkeys(a.name for a in play_roles)),
                              tuple(t.name for t in play_tasks if t.name), tags_of_tasks(play_tasks)))
    return Playbook(
        name=path.relative_to(root).as_posix(), path=path, description=_first_comment(text),
        service=service_of(path.stem), tags=tuple(dict.fromkeys(tags)), host_patterns=tuple(dict.fromkeys(hosts)),
        play_names=tuple(names), tasks=tuple(tasks), variables=tuple(dict.fromkeys(variables)),
        applies=tuple(applies), imports=tuple(imports), prompts=tuple(prompts), plays=tuple(plays),
        containers=tuple(dict.fromkeys(containers + containers_of(tasks))),
    )
