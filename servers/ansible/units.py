"""Units: what a person can ask chiffon to run. A plan runs one unit.

A unit is a playbook as a whole, or one thing a playbook applies and a tag selects:
a role entry (``- role: jellyfin`` / ``tags: [jellyfin]``) or an imported task file
(``- import_tasks: jellyfin.yml`` / ``tags: docker,jellyfin``), also inside a role's
``tasks/main.yml``. A role that no playbook applies is a unit with no playbook: chiffon
says so rather than planning something else.

The tag a plan passes (``--tags``) is the entry's most specific one: the tag named after the
service if there is one, else the tag the fewest units of that playbook carry
(``ansible-nas`` on twenty roles loses to ``jellyfin`` on one).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from chiffon.servers.ansible.plays import Application, Playbook, Task, service_of
from chiffon.servers.ansible.roles import Role

GENERIC_TAGS = frozenset({"always", "never", "all", "tagged", "untagged", "skip_ansible_lint", "molecule-notest"})
_HOST_CONDITION = re.compile(r"inventory_hostname\s*(?:==|in)\s*(\[[^\]]*\]|['\"][^'\"]+['\"])")


@dataclass(frozen=True)
class Unit:
    """One runnable unit: ``playbook`` + ``tags``; ``playbook`` is None for a role no playbook applies."""

    id: str
    kind: str  # playbook | role | tasks | unused-role
    service: str
    playbook: Playbook | None
    tags: tuple[str, ...] = ()
    entry_tags: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    when: tuple[str, ...] = ()
    role: Role | None = None
    role_name: str | None = None
    source: str = ""
    description: str = ""
    steps: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    also_applies: tuple[str, ...] = ()  # the other roles the unit's play applies (site plays apply many)

    @property
    def name(self) -> str:
        """Human name: ``site.yml --tags jellyfin``, ``deploy-redis.yml`` or ``role uptime-kuma``."""
        if self.playbook is None:
            return f"role {self.role_name}"
        return self.playbook.name + (f" --tags {','.join(self.tags)}" if self.tags else "")

    def words(self) -> tuple[str, str]:
        """``(strong, weak)`` text for matching: names, tags, description; then step and play names."""
        strong = [self.service, *self.entry_tags, self.role_name or "", self.description,
                  PurePosixPath(self.source).stem if self.kind == "tasks" else ""]
        weak = list(self.steps)
        if self.playbook is not None and self.kind == "play":
            strong.append(PurePosixPath(self.playbook.name).stem)
        if self.playbook is not None and self.kind == "playbook":
            # the tags of its plays belong to the play units when there are several plays
            own_tags = self.playbook.tags if len(self.playbook.plays) < 2 else ()
            strong += [self.playbook.name.replace("/", " "), *own_tags]
            weak += list(self.playbook.play_names)
        if self.role is not None:
            weak += list(self.role.variables[:20])
        return " ".join(strong), " ".join(weak)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{id, kind, service, playbook, tags, hosts, when, role, source, description, warnings}``."""
        return {
            "id": self.id, "kind": self.kind, "service": self.service,
            "playbook": self.playbook.name if self.playbook else None, "tags": list(self.tags),
            "hosts": list(self.hosts), "when": list(self.when), "role": self.role_name, "source": self.source,
            "description": self.description, "warnings": list(self.warnings),
        }


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def choose_tag(entry_tags: tuple[str, ...], service: str, counts: Counter[str]) -> tuple[str, ...]:
    """The one tag that selects this entry best (see the module docstring); ``()`` when it has none."""
    candidates = [t for t in dict.fromkeys(entry_tags) if t not in GENERIC_TAGS]
    if not candidates:
        return ()
    want = _norm(service)

    def key(item: tuple[int, str]) -> tuple[int, int, int]:
        index, tag = item
        norm = _norm(tag)
        closeness = 0 if norm == want else 1 if want and (want in norm or norm in want) else 2
        return closeness, counts[tag], index

    return (min(enumerate(candidates), key=key)[1],)


def hosts_of_condition(when: tuple[str, ...]) -> list[str]:
    """Hosts named by an ``inventory_hostname == "nas"`` / ``in [...]`` condition."""
    found: list[str] = []
    for expression in when:
        for match in _HOST_CONDITION.finditer(expression):
            found += re.findall(r"['\"]([^'\"]+)['\"]", match.group(1))
    return found


def resolve_role(roles: dict[str, Role], name: str, near: str) -> Role | None:
    """The repo's role a play names ``name`` (exact name, else the short name, nearest to ``near`` first)."""
    if name in roles:
        return roles[name]
    short = name.rsplit("/", 1)[-1]
    same = [r for r in roles.values() if r.short == short or r.name.endswith("/" + name)]
    if not same:
        return None
    return min(same, key=lambda r: (not r.path.startswith(near), len(r.path)))


TasksReader = Callable[[str], tuple[Task, ...]]


def build_units(playbooks: dict[str, Playbook], roles: dict[str, Role], read_tasks: TasksReader) -> list[Unit]:
    """Every unit of the repo: each playbook, each tagged thing it applies, each role nothing applies.

    ``read_tasks(repo-relative path)`` returns the tasks of a task file (empty when it is missing).
    """
    units: list[Unit] = []
    applied_roles: set[str] = set()
    for pb in playbooks.values():
        here = str(PurePosixPath(pb.name).parent)
        near = "" if here == "." else here + "/"
        entries: list[Unit] = []
        for app in pb.applies:
            entries.extend(_entry_units(pb, app, roles, near, read_tasks, applied_roles))
        carriers: dict[str, list[str]] = {}
        for u in entries:
            for tag in dict.fromkeys(u.entry_tags):
                carriers.setdefault(tag, []).append(u.role_name or u.source)
        counts = Counter({tag: len(names) for tag, names in carriers.items()})
        units.append(Unit(id=pb.name, kind="playbook", service=pb.service, playbook=pb, hosts=pb.host_patterns,
                          description=pb.description, steps=tuple(t.name for t in pb.tasks if t.name)))
        entries += _play_units(pb)
        entries += _task_tag_units(pb, entries)
        seen: Counter[str] = Counter()
        for unit in entries:
            seen[unit.id] += 1  # a role applied by two plays of one playbook: two units
            unique = unit if seen[unit.id] == 1 else Unit(**{**unit.__dict__, "id": f"{unit.id}#{seen[unit.id]}"})
            units.append(_with_tags(unique, counts, carriers, len(pb.applies) + len(pb.plays) - 1))
    for dep_of in list(applied_roles):
        _mark_dependencies(roles, dep_of, applied_roles)
    for role in sorted(roles.values(), key=lambda r: r.path):
        if role.name not in applied_roles:
            units.append(Unit(id=f"role:{role.path}", kind="unused-role", service=service_of(role.short),
                              playbook=None, role=role, role_name=role.name, source=role.path,
                              description=role.description, steps=role.task_names,
                              warnings=(f"role {role.name} exists in {role.path} but no playbook applies it",)))
    return units


def _play_units(pb: Playbook) -> list[Unit]:
    """A unit for each play with tags of its own in a playbook of several plays (``teardown.yml``: one play
    per service, tagged with its name); ``--tags`` then runs that play."""
    if len(pb.plays) < 2:
        return []
    out = []
    for play in pb.plays:
        own = tuple(t for t in play.tags if t not in GENERIC_TAGS)
        if not own:
            continue
        service = next((service_of(t) for t in own if _norm(t) in _norm(play.name + play.hosts)), service_of(own[0]))
        out.append(Unit(id=f"{pb.name}::play:{play.index}", kind="play", service=service, playbook=pb,
                        entry_tags=own, hosts=(play.hosts,), description=play.name, steps=play.task_names,
                        source=pb.name, also_applies=play.roles))
    return out


def _common_tags(role: Role | None) -> tuple[str, ...]:
    """Tags every task (or every imported task file) of ``role`` carries: ``--tags maintenance`` runs the whole
    role when each of its imports is tagged ``maintenance`` (with ``debian``, ``docker``...)."""
    if role is None:
        return ()
    sets = [set(sub.tags) for sub in role.imports]
    if not sets and role.task_tags:
        every = set(role.task_names)
        sets = [{tag for tag, names in role.task_tags if set(names) >= every}] if every else []
    common = set.intersection(*sets) if sets else set()
    return tuple(sorted(common - GENERIC_TAGS))


def _task_tag_units(pb: Playbook, entries: list[Unit]) -> list[Unit]:
    """A unit for each tag set on tasks (not on a role entry, an import or a play) in a playbook's plays or the
    roles it applies: ``--tags packages`` runs the tasks tagged ``packages``."""
    taken = {t for u in entries for t in u.entry_tags} | set(pb.tags) | GENERIC_TAGS
    found: dict[str, tuple[list[str], list[str]]] = {}  # tag -> (task names, hosts)
    sources = [(play.task_tags, play.hosts) for play in pb.plays]
    sources += [(u.role.task_tags, ",".join(u.hosts)) for u in entries if u.kind == "role" and u.role is not None]
    for tag_list, hosts in sources:
        for tag, names in tag_list:
            if tag in taken:
                continue
            steps, where = found.setdefault(tag, ([], []))
            steps.extend(names)
            if hosts and hosts not in where:
                where.append(hosts)
    everything = {t.name for t in pb.tasks if t.name} | {n for u in entries for n in u.steps}
    return [Unit(id=f"{pb.name}::tag:{tag}", kind="tagged", service=service_of(tag), playbook=pb, entry_tags=(tag,),
                 hosts=tuple(where), description=f"tasks tagged {tag}", steps=tuple(dict.fromkeys(steps)),
                 source=pb.name) for tag, (steps, where) in sorted(found.items())
            if not everything <= set(steps)]  # a tag on every task is the whole playbook


def _mark_dependencies(roles: dict[str, Role], name: str, applied: set[str]) -> None:
    role = roles.get(name)
    for dep in role.dependencies if role else ():
        found = resolve_role(roles, dep, "")
        if found is not None and found.name not in applied:
            applied.add(found.name)
            _mark_dependencies(roles, found.name, applied)


def _entry_units(pb: Playbook, app: Application, roles: dict[str, Role], near: str, read_tasks: TasksReader,
                 applied_roles: set[str]) -> list[Unit]:
    hosts = tuple(hosts_of_condition(app.when)) or ((app.hosts,) if app.hosts else ())
    if app.kind == "tasks":
        source = str(PurePosixPath(near or ".") / app.name) if not app.name.startswith("/") else app.name
        source = str(PurePosixPath(source))
        return [Unit(id=f"{pb.name}::tasks:{source}", kind="tasks", service=service_of(PurePosixPath(app.name).stem),
                     playbook=pb, entry_tags=app.tags, hosts=hosts, when=app.when, source=source,
                     steps=tuple(t.name for t in read_tasks(source) if t.name))]
    role = resolve_role(roles, app.name, near)
    if role is not None:
        applied_roles.add(role.name)
    short = app.name.rsplit("/", 1)[-1]
    play = next((p for p in pb.plays if p.hosts == app.hosts and p.name == app.play and app.name in p.roles), None)
    others = tuple(r for r in play.roles if r != app.name) if play else ()
    units = [Unit(id=f"{pb.name}::role:{app.name}", kind="role", service=service_of(short), playbook=pb,
                  entry_tags=app.tags + _common_tags(role), hosts=hosts, when=app.when + (role.conditions if role else ()), role=role,
                  role_name=app.name, source=role.path if role else app.name,
                  description=role.description if role else "", steps=role.task_names if role else (),
                  also_applies=others)]
    for sub in role.imports if role is not None else ():
        assert role is not None  # narrowed for the type checker: imports come from the role
        source = str(PurePosixPath(role.path) / "tasks" / sub.name)
        if not sub.tags:
            continue  # an untagged import is part of the role, not a unit of its own
        sub_when = app.when + sub.when
        units.append(Unit(
            id=f"{pb.name}::tasks:{source}", kind="tasks", service=service_of(PurePosixPath(sub.name).stem),
            playbook=pb, entry_tags=app.tags + sub.tags, hosts=tuple(hosts_of_condition(sub_when)) or hosts,
            when=sub_when, role=role, role_name=role.name, source=source,
            steps=tuple(t.name for t in read_tasks(source) if t.name)))
    return units


def _with_tags(unit: Unit, counts: Counter[str], carriers: dict[str, list[str]], applied: int) -> Unit:
    tags = choose_tag(unit.entry_tags, unit.service, counts)
    warnings = []
    if not tags and applied > 1:
        what = f"role {unit.role_name}" if unit.kind == "role" else f"task file {unit.source}"
        warnings.append(f"no tag selects only {what}: the plan runs the whole of "
                        f"{unit.playbook.name if unit.playbook else '?'}, everything it applies")
    elif tags:
        me = unit.role_name or unit.source
        others = [name for name in carriers.get(tags[0], []) if name != me]
        if others:
            warnings.append(f"--tags {tags[0]} also runs {', '.join(dict.fromkeys(others))}")
    return Unit(**{**unit.__dict__, "tags": tags, "warnings": tuple(warnings)})


def services(units: list[Unit], resolve_hosts: Callable[[str], list[str]] | None = None,
             host: str | None = None) -> list[dict[str, Any]]:
    """What runs where: one row per service the repo deploys, sorted by service.

    Rows: ``{service, kind, playbook, tags, hosts, targets, when, source}``. ``hosts`` are the play's
    host patterns (or the hosts a ``when: inventory_hostname == ...`` names); ``targets`` the inventory
    hosts they select, when ``resolve_hosts`` is given. A playbook that applies tagged roles or task files
    is listed through them, not as a service of its own, and so is a role made of tagged task files.
    ``host`` keeps only rows that target it.
    """
    with_entries = {u.playbook.name for u in units if u.playbook is not None and u.kind in ("role", "tasks")}
    containers = {(u.playbook.name, u.role_name) for u in units if u.kind == "tasks" and u.role and u.playbook}
    rows = []
    for unit in units:
        if unit.kind == "playbook" and unit.playbook is not None and unit.playbook.name in with_entries:
            continue
        if unit.kind == "role" and unit.playbook is not None and (unit.playbook.name, unit.role_name) in containers:
            continue  # a docker_containers role is listed through the task file of each service it imports
        targets = resolve_hosts(",".join(unit.hosts)) if resolve_hosts and unit.hosts else []
        if host and host not in targets and host not in unit.hosts:
            continue
        rows.append({"service": unit.service, "kind": unit.kind,
                     "playbook": unit.playbook.name if unit.playbook else None, "tags": list(unit.tags),
                     "hosts": list(unit.hosts), "targets": targets, "when": list(unit.when), "source": unit.source
                     or (unit.playbook.name if unit.playbook else "")})
    return sorted(rows, key=lambda r: (r["service"], r["playbook"] or "", r["tags"]))
