"""What a unit is called and what it does, as a request would say it.

- :func:`unit_action`: remove, backup, restore, stop, cleanup, update, harden, bootstrap, else deploy; from
  the playbook's file name first (``teardown.yml``), then its play's name, the tag that selects it and its
  role's name.
- :func:`unit_names`: its service, role, tags, task file, the group a one-play playbook targets, a generic
  playbook's folder (``services/nut/deploy.yml`` is nut's), and the containers and compose services it runs.
- :func:`partial_names`: the words inside those names (``media`` of ``media_services``), which name it less
  surely; :func:`context_names`: the playbook, folder and group around it ("telegraf on the proxmox nodes").
- :data:`QUALIFIERS` in a playbook's path (``docker-test.yml``, ``archive/``) set it apart from the one people
  mean when they do not say them; :data:`PHASE_TAGS` name the phases of one playbook (``install``,
  ``upgrade``, ``configure``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from chiffon.servers.ansible import matching
from chiffon.servers.ansible.catalog import Unit
from chiffon.servers.ansible.intent import NOT_ENTITIES, norm

# What a unit does, from its names: checked in this order, deploy when none matches.
UNIT_ACTIONS: tuple[tuple[str, str], ...] = (
    ("remove", r"teardown|tear[_-]?down|uninstall|remove|destroy|delete|decommission|purge|reset"),
    ("stop", r"shutdown|shut[_-]down|power[_-]?off|poweroff|halt|stop"),
    ("backup", r"backup|back[_-]up|dump"),
    ("restore", r"restore"),
    ("cleanup", r"cleanup|clean[_-]up|prune"),
    ("update", r"update|upgrade|patch|maintenance|unattended"),
    ("harden", r"harden|hardening|security|secure|lockdown"),
    ("bootstrap", r"bootstrap|initial|^init|[-_]init|first[-_]?run|server[-_]install|provision|baseline|"
                  r"new[-_]server|setup[-_]server"),
)

# A deploy playbook that says so in its name (``deploy.yml``, ``install-jellyfin.yml``): the unit that answers
# "redeploy the services" when the request names nothing more.
SAYS_DEPLOY = re.compile(r"(?:^|[^a-z])(?:deploy|install|setup|site|main)(?:[^a-z]|$)")

# Words in a playbook's path that set it apart from the one people mean when they do not say them.
QUALIFIERS = frozenset({"test", "testing", "dev", "staging", "old", "legacy", "deprecated", "depreciated", "archive",
                        "archived", "example", "examples", "sample", "tmp", "draft", "wip", "unused", "bak", "backup"})

# Tags that name a phase of a playbook, by the action they do: "install", "upgrade", "uninstall"...
PHASE_TAGS = {"deploy": ("install", "deploy", "setup"), "update": ("upgrade", "update"),
              "configure": ("configure", "config"),
              "remove": ("uninstall", "remove", "teardown", "destroy"), "backup": ("backup",),
              "restore": ("restore",)}

def pattern_names(pattern: str) -> list[str]:
    """The host and group names in a host pattern or ``--limit`` (``media:&docker,!nas`` -> media, docker, nas)."""
    return [name for name in re.split(r"[:,&!\s]+", pattern) if name]


def unit_action(unit: Unit) -> str:
    """What ``unit`` does (``remove``, ``backup``, ``restore``, ``cleanup``, ``update``, ``harden``, else
    ``deploy``), from its playbook's file name, its play's name, the tag that selects it and its role's name
    (not every tag it carries: a pihole play tagged ``pihole, update, init`` deploys Pi-hole)."""
    texts = [unit.role_name or "", *(unit.tags or unit.entry_tags[:1]),
             PurePosixPath(unit.source).stem if unit.kind == "tasks" else ""]
    if unit.kind == "playbook" and unit.playbook is not None:  # its file name first: upgrade.yml may back up first
        texts = [PurePosixPath(unit.playbook.name).stem] if action_in(PurePosixPath(unit.playbook.name).stem) else \
            [*texts, unit.description, *unit.playbook.play_names[:3]]
    elif unit.kind == "play" and unit.playbook is not None:
        texts += [PurePosixPath(unit.playbook.name).stem, unit.description]
    elif unit.playbook is not None:
        stem = PurePosixPath(unit.playbook.name).stem
        texts.append(stem if action_in(stem) in ("remove", "backup", "restore", "update", "stop") else "")
    return action_in(" ".join(texts)) or "deploy"

def action_in(text: str) -> str | None:
    lowered = text.lower()
    for name, pattern in UNIT_ACTIONS:
        if re.search(rf"(?:^|[^a-z])(?:{pattern})", lowered):
            return name
    return None

def unit_names(unit: Unit) -> set[str]:
    """The names a request may call ``unit`` by, normalised: service, role, tags, task file, play group, and
    a playbook's own name (``deploy-uptime-kuma.yml`` -> ``uptimekuma``)."""
    names = {unit.service, *unit.entry_tags}
    if unit.role is not None and unit.kind in ("role", "unused-role"):
        names |= set(unit.role.containers)  # the containers and compose services it runs
    if unit.role_name:
        names |= {unit.role_name, unit.role_name.rsplit("/", 1)[-1]}
    if unit.kind == "tasks":
        names.add(PurePosixPath(unit.source).stem)
    if unit.kind == "playbook" and unit.playbook is not None:
        names |= {PurePosixPath(unit.playbook.name).stem, unit.playbook.service}
        if PurePosixPath(unit.playbook.name).stem.lower() in GENERIC_PLAYBOOKS:
            names.add(PurePosixPath(unit.playbook.name).parent.name)  # services/nut/deploy.yml is nut's
        if len(unit.playbook.host_patterns) == 1:  # misc.yml's one play for hosts: pihole is pihole's
            names |= set(pattern_names(unit.playbook.host_patterns[0]))
        names |= set(unit.playbook.containers)
    return _normalised(names)

GENERIC_PLAYBOOKS = frozenset({"site", "main", "playbook", "deploy", "install", "setup", "run", "test-playbook",
                               "uninstall", "teardown", "remove", "update", "upgrade", "backup", "restore", "init",
                               "bootstrap", "provision", "configure", "default", "all", "start", "stop"})

def partial_names(unit: Unit) -> set[str]:
    """The words inside a unit's names (``media_services`` -> ``media``, ``services``): a request word that is one
    of them names the unit less surely than its whole name."""
    raw = {unit.service, *unit.entry_tags, unit.role_name or ""}
    if unit.kind == "playbook" and unit.playbook is not None and len(unit.playbook.plays) == 1:
        raw.add(unit.playbook.plays[0].name)  # "Install PiHole, IAM (Authelia), and LDAP"
    words = {norm(w) for name in raw for w in re.split(r"[-_./,()\s]+", name) if len(w) > 2}
    return words - unit_names(unit) - NOT_ENTITIES - matching.STOPWORDS

def context_names(unit: Unit) -> set[str]:
    """Names around ``unit`` that a request may add to it: the group its play targets, its playbook's name
    and folder ("telegraf on the proxmox nodes" -> the telegraf role of ``proxmox.yml``)."""
    names: set[str] = {h for host in unit.hosts for h in pattern_names(host)}
    if unit.playbook is not None:
        path = PurePosixPath(unit.playbook.name)
        names |= {path.stem, unit.playbook.service, path.parent.name}
        if unit.kind == "playbook" and len(unit.playbook.host_patterns) == 1:
            names |= set(pattern_names(unit.playbook.host_patterns[0]))
    return _normalised(names) - unit_names(unit)

def _normalised(names: set[str]) -> set[str]:
    out = set()
    for name in names:
        n = norm(name)
        for prefix in ("deploy", "install", "setup", "teardown", "remove", "backup", "update", "restore",
                       "uninstall", "docker", "role", "ansible", "play"):
            if n.startswith(prefix) and len(n) > len(prefix) + 2:
                out.add(n[len(prefix):])
        for suffix in ("playbook", "play", "deploy", "setup", "install", "role", "stack"):
            if n.endswith(suffix) and len(n) > len(suffix) + 2:
                out.add(n[: -len(suffix)])
        out.add(n)
    return {n for n in out if len(n) > 1 and n not in NOT_ENTITIES and n not in ("all", "localhost")}

def qualifiers(unit: Unit) -> set[str]:
    """The qualifier words (:data:`QUALIFIERS`) in the unit's playbook path (``docker-test.yml``, ``archive/``);
    ``backup`` only where the unit does not back something up."""
    if unit.playbook is None:
        return set()
    words = set(re.split(r"[^a-z]+", unit.playbook.name.lower())) & QUALIFIERS
    return words - ({"backup"} if unit_action(unit) == "backup" else set())

def phase_of(tag: str, words: set[str]) -> bool:
    """``tag`` names one of the phase ``words`` (``install``, ``config-wireguard``, ``upgrade_packages``)."""
    parts = re.split(r"[-_.]", tag.lower())
    return tag.lower() in words or parts[0] in words
