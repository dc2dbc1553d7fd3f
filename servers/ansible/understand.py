"""Understand a request: the unit, playbook, tags, limit and inventory it asks for.

This never depends on what is present on this machine: an inventory that is gitignored, a vault
password nobody gave, a collection not installed change whether a plan can be approved, never what
it answers. :func:`understand` returns an :class:`Answer` for every request that matches something,
with what is missing as ``problems``; only a request that matches nothing is refused.

How a request meets the repo:

- The request's action, entities, environment and targets (:mod:`servers.ansible.intent`) against each
  unit's action and names (:mod:`servers.ansible.unit_words`). A unit whose action contradicts the
  request's is never chosen for it: "tear down X" never runs X's deploy playbook. An entity that names
  exactly one answer is that answer even when the rest of the request scores low; several make a plan that
  lists them (``Answer.candidates``). The request's most specific word counts most.
- **The repo's own commands** (:mod:`servers.ansible.commands`): a command that runs a unit's
  playbook with its tag, or limited to its group, is the owner's word: it adds to the unit's score
  and gives the plan its ``--limit`` and inventory; a unit of an imported playbook is run through the
  playbook the commands run.
- **Several plays** applying one role: the play whose ``hosts`` names the service's group wins, then
  the one applying fewest other roles; the plan says what else the chosen play applies.
- **Inventory**: the environment the request names, the owner's ``-i``, ``ansible.cfg``'s (present or
  not), the only one found, the one a committed example becomes (:mod:`servers.ansible.where`).
- **Limit**: a host or group the request names after on/to, the owner's ``--limit`` (:mod:`servers.ansible.where`).

Scores: retrieval's score in [0, 1] (:mod:`servers.ansible.matching`) plus :data:`ENTITY_BONUS` for an
exact entity, :data:`ACTION_BONUS` for the same action, :data:`COMMAND_BONUS` for the owner's command,
:data:`GROUP_BONUS` for a play on the service's own group; the bonuses were set on the labelled
corpus of ``benchmarks/real_repos.yaml`` and the fixtures of ``tests/fixtures/repos.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from chiffon.servers.ansible import matching
from chiffon.servers.ansible.candidate import Candidate
from chiffon.servers.ansible.catalog import Catalog, Unit
from chiffon.servers.ansible.commands import Command
from chiffon.servers.ansible.intent import Intent, norm, read_intent
from chiffon.servers.ansible.inventories import ENVIRONMENTS
from chiffon.servers.ansible.layout import Project
from chiffon.servers.ansible.unit_words import (
    PHASE_TAGS,
    SAYS_DEPLOY,
    action_in,
    context_names,
    partial_names,
    pattern_names,
    phase_of,
    qualifiers,
    unit_action,
    unit_names,
)
from chiffon.servers.ansible.where import choose_inventory, choose_limit
from chiffon.shared.errors import NoMatch, RoleNotApplied

__all__ = ["Answer", "Candidate", "Intent", "candidates", "choose", "read_intent", "settle", "understand",
           "unit_action", "unit_names"]

ENTITY_BONUS = 0.35
CONTEXT_BONUS = 0.1  # per word naming the unit's playbook, folder or target group ("telegraf on the proxmox nodes")
ACTION_BONUS = 0.25
ACTION_PENALTY = 0.5
COMMAND_BONUS = 0.2
GROUP_BONUS = 0.1
QUALIFIER_PENALTY = 0.15
CLOSE = 0.1  # candidates within this of the best, both naming the request's entity, are a choice for the human

# Actions a request may be answered with besides its own (a deploy playbook also updates what it deploys).
COMPATIBLE = {"deploy": {"deploy", "harden"}, "update": {"update", "deploy"}, "harden": {"harden", "deploy"},
              "remove": {"remove"}, "backup": {"backup"}, "restore": {"restore"}, "cleanup": {"cleanup", "update"},
              "stop": {"stop"}, "bootstrap": {"bootstrap", "deploy"}}


@dataclass
class Answer:
    """What a request asks for, whether or not it can run here.

    ``best`` is the chosen candidate; ``candidates`` the distinct answers that fit (best first);
    ``sure`` is False when several name the request's entity equally well (the human, or a model, picks).
    ``inventory`` is the repo-relative inventory the plan uses, present or not; ``problems`` say what is
    missing here (an inventory to create or copy, several to choose from), each with its fix.
    """

    intent: Intent
    best: Candidate
    candidates: list[Candidate]
    sure: bool
    project: Project
    inventory: str | None
    inventory_source: str
    inventory_present: bool
    limit: str | None
    limit_source: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def evidence(self) -> list[str]:
        """Why this answer, in sentences: the entity, the owner's command, the play chosen."""
        return self.best.evidence

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary of the answer (what ``plan.match["answer"]`` keeps)."""
        return {"action": self.intent.action, "entities": list(self.intent.entities[:8]),
                "environment": self.intent.environment, "sure": self.sure, "project": self.project.dir or ".",
                "inventory": self.inventory, "inventory_source": self.inventory_source,
                "inventory_present": self.inventory_present, "limit": self.limit, "limit_source": self.limit_source,
                "evidence": self.evidence, "problems": self.problems,
                "candidates": [c.as_dict() for c in self.candidates[:5]]}


def _commands_for(unit: Unit, names: set[str], commands: list[Command]) -> list[Command]:
    """The owner's commands that run ``unit``: its playbook with one of its tags, or limited to one of its
    names; for a whole-playbook unit, its playbook with no tags."""
    if unit.playbook is None:
        return []
    mine = [c for c in commands if c.playbook == unit.playbook.name]
    tagged = [c for c in mine if c.tags and set(c.tags) & set(unit.entry_tags)]
    limited = [c for c in mine if c.limit and {norm(p) for p in pattern_names(c.limit)} & names]
    if tagged or limited:
        return tagged + [c for c in limited if c not in tagged]
    if unit.kind == "playbook":
        return [c for c in mine if not c.tags]
    return []


def _hosts_name_service(unit: Unit, entity: str | None) -> bool:
    """The unit's play targets a group named after the service (``hosts: uptime-kuma``)."""
    wanted = {norm(unit.service), entity or ""} - {""}
    return unit.kind in ("role", "play", "tasks") and any(
        norm(h) in wanted for host in unit.hosts for h in pattern_names(host))


def _fits(action: str, intent: Intent) -> bool:
    return action in COMPATIBLE.get(intent.action, {intent.action}) or action in intent.also


def _tag_asked(unit: Unit, hit: str | None, intent: Intent, action: str) -> tuple[str, ...]:
    """The tag a plan of ``unit`` passes: the one the request names when it is a tag the unit carries (a group
    tag such as ``frontends`` or ``services``), or one named after the request's action (``security`` for
    "harden", ``maintenance`` for "update"); else the unit's own most specific tag."""
    tags = [t for t in unit.entry_tags if t not in unit.tags]
    own = norm(unit.tags[0]) if unit.tags else ""
    longer = next((t for t in tags if hit and norm(t) == hit and own and own in hit and hit != own), None)
    if longer:
        return (longer,)  # "docker compose" names docker-compose, not docker
    if own and any(e in own for e in intent.entities if len(e) > 2):
        return unit.tags  # the request names the unit's own tag ("prometheus node exporter")
    for tag in tags:
        if norm(tag) == hit or norm(tag) in intent.generic:
            return (tag,)
    if hit is None and not (own and action_in(own) == intent.action):
        for tag in tags:
            if action_in(tag) == intent.action and action == intent.action:
                return (tag,)
    return unit.tags


def _phase_unit(catalog: Catalog, unit: Unit, intent: Intent) -> Unit | None:
    """The part of a whole playbook that does the request's action, when the playbook is split in phases by tag
    (``playbooks/immich/main.yaml`` tagged ``install`` and ``upgrade``: "upgrade Immich" is ``--tags upgrade``)."""
    if unit.playbook is None:
        return None
    known = {w for words in PHASE_TAGS.values() for w in words}
    if unit.kind != "playbook" and not (unit.tags and phase_of(unit.tags[0], known)):
        return None  # only a whole playbook or one of its phases is swapped for the phase asked for
    parts = [u for u in catalog.units if u.playbook is unit.playbook and u.kind != "playbook" and u.tags]
    phases = {u.tags[0]: u for u in parts if phase_of(u.tags[0], known)}
    if len(phases) < 2:
        return None
    wanted = set(PHASE_TAGS.get(intent.action, ()))
    if re.search(r"\b(?:re)?config(?:ure|uration|s)?\b|\bsettings\b", intent.text.lower()):
        wanted = {"configure", "config"}  # "push the updated nagios config": the configure phase
    chosen = next((phases[t] for t in phases if phase_of(t, wanted)), None)
    return chosen if chosen is not None and chosen is not unit else None


def _command_tags(unit: Unit, own: list[Command], intent: Intent) -> tuple[str, ...] | None:
    """The owner's command's tags for this unit, when they are its tag plus others the request names
    (the justfile's ``--tags web,vhosts`` for "update the nginx vhosts")."""
    for command in own:
        extra = [t for t in command.tags if t not in unit.tags]
        if unit.tags and set(unit.tags) <= set(command.tags) and extra and \
                all(norm(t) in intent.entities for t in extra):
            return command.tags
    return None


def _through_importer(catalog: Catalog, unit: Unit, commands: list[Command]) -> tuple[Unit, str | None]:
    """``unit`` run through the playbook that imports its own, when that is the playbook the owner's commands
    run (``main.yml`` importing ``services.yml``: ``main.yml --tags vaultwarden``), with the sentence saying so."""
    if unit.playbook is None or unit.kind == "unused-role":
        return unit, None
    run = {c.playbook for c in commands}
    if unit.playbook.name in run:
        return unit, None
    for importer in catalog.importers(unit.playbook):
        if importer.name in run and unit.tags:  # its tag keeps the importer's run to it; a whole playbook stays
            sentence = f"the repo's commands run {importer.name}, which imports {unit.playbook.name}"
            return replace(unit, playbook=importer), sentence
    return unit, None


def _entity_hit(unit: Unit, names: set[str], hits: list[str], intent: Intent,
                specificity: Callable[[str], float]) -> tuple[str | None, float]:
    """``(entity, weight)``: the most specific request word naming the unit (weight 1); else a generic word that
    is one of its tags ("the services"); else a word inside its names or its name inside a word (weight 0.5:
    "media" of media_services, "paperless-ngx" for paperless, "r720" for r720xd); else ``(None, 1.0)``."""
    if hits:
        return max(hits, key=lambda e: (specificity(e), len(e))), 1.0
    tag_words = {norm(t) for t in unit.entry_tags}
    generic = next((g for g in intent.generic if g in tag_words), None)
    if generic is not None:
        return generic, 1.0
    inside = partial_names(unit)
    partial = [e for e in intent.what if len(e) > 2 and (e in inside or any(
        len(n) >= 5 and e.startswith(n) or len(e) >= 4 and n.startswith(e) and any(ch.isdigit() for ch in e)
        for n in names))]
    return (max(partial, key=len), 0.5) if partial else (None, 1.0)


def candidates(catalog: Catalog, intent: Intent, ranked: list[matching.Match],
               commands: list[Command]) -> list[Candidate]:
    """Every unit as a :class:`Candidate` with its adjusted score, best first (see the module docstring)."""
    out = []
    named_by = {id(m.unit): unit_names(m.unit) for m in ranked}
    total = max(len(ranked), 1)

    def specificity(entity: str) -> float:
        """How few units an entity names, in [0, 1] (the inverse document frequency, normalised): "telegraf"
        names one role, "proxmox" a playbook, a group and five tags."""
        df = sum(1 for names in named_by.values() if entity in names)
        return math.log(1 + total / max(df, 1)) / math.log(1 + total)

    named_somewhere = [e for e in intent.what if any(e in n for n in named_by.values())]
    sharpest = max((specificity(e) for e in named_somewhere), default=1.0)
    sharpest_hit = max(named_somewhere, key=specificity, default=None)
    for m in ranked:
        unit = m.unit
        names = named_by[id(unit)]
        hits = [e for e in intent.what if e in names]
        hit, weight = _entity_hit(unit, names, hits, intent, specificity)
        tag_words = {norm(t) for t in unit.entry_tags}
        context = [e for e in intent.entities if (e in context_names(unit) or e in names) and e != hit
                   and e not in hits]
        action = unit_action(unit)
        tags = _tag_asked(unit, hit, intent, action)
        if tags != unit.tags:
            unit = replace(unit, tags=tags, warnings=tuple(w for w in unit.warnings if "--tags" not in w))
        score, evidence = m.score, []
        if hit:
            # the request's most specific word counts in full; "proxmox" beside "telegraf" counts less
            score += ENTITY_BONUS * weight * specificity(hit) / sharpest
            evidence.append(f"the request names {hit!r}, which is this unit's "
                            + ("tag" if hit in tag_words else "name"))
        if context:
            score += CONTEXT_BONUS * min(len(context), 2)
        if action == intent.action:
            score += ACTION_BONUS
            if sharpest_hit is None and unit.kind == "playbook" and intent.action != "deploy":
                score += GROUP_BONUS  # "update all the servers": a playbook that does it, not a part of one
        elif not _fits(action, intent):
            score -= ACTION_PENALTY
        own = _commands_for(unit, names | set(intent.entities) if hit else names, commands)
        if own and (hit or unit.kind == "playbook" and m.score >= matching.MIN_SCORE):
            # the owner's command for this very unit (its tag, its group) weighs more than one running the playbook
            score += COMMAND_BONUS if any(c.tags or c.limit for c in own) else COMMAND_BONUS / 2
            evidence.append(f"the repo's {own[0].source.rsplit(':', 1)[0]} runs: {own[0].describe()}")
        if hit and _hosts_name_service(unit, hit):
            score += GROUP_BONUS
            evidence.append(f"its play targets the group {','.join(unit.hosts)}, named after the service")
        unsaid = qualifiers(unit) - set(intent.entities) - set(intent.targets) - \
            set(ENVIRONMENTS.get(intent.environment or "", ())) - set(re.findall(r"[a-z]+", intent.text.lower()))
        if unsaid:  # docker-test.yml, archive/, deprecated/: not what "install docker" means
            score -= QUALIFIER_PENALTY
            evidence.append(f"its name says {', '.join(sorted(unsaid))}, which the request does not")
        if unit.also_applies:
            score -= 0.01 * min(len(unit.also_applies), 10)
            evidence.append(f"its play also applies {', '.join(unit.also_applies[:8])} on {','.join(unit.hosts)}")
        phase = _phase_unit(catalog, unit, intent) if hit or unit.kind != "playbook" else None
        if phase is not None:
            unit = phase
            evidence.append(f"its tag {phase.tags[0]!r} is the part of the playbook that does what was asked")
        wider = _command_tags(unit, own, intent)
        if wider:
            unit = replace(unit, tags=wider)
        unit, via = _through_importer(catalog, unit, commands)
        if via is not None:
            evidence.append(via)
            own = own or [c for c in commands if unit.playbook is not None and c.playbook == unit.playbook.name]
        out.append(Candidate(matching.Match(unit, score, m.reason), hit, action, own, evidence))
    return sorted(out, key=lambda c: (-round(c.match.score, 9), matching._KIND_ORDER.get(c.unit.kind, 3),
                                      c.unit.id))


def choose(catalog: Catalog, intent: Intent, ranked: list[matching.Match],
           commands: list[Command], meaning: bool = False) -> tuple[Candidate, list[Candidate], bool]:
    """``(best, distinct candidates, sure)``.

    Raises:
        NoMatch: nothing names the request's entity and no unit scores :data:`matching.MIN_SCORE` in words;
            or the only units that fit do the opposite of what was asked (the closest are listed).
        RoleNotApplied: the best match is a role no playbook applies.
    """
    ranked_c = candidates(catalog, intent, ranked, commands)
    fitting = [c for c in ranked_c if _fits(c.action, intent)]
    named = [c for c in fitting if c.entity]
    lexical_best = max((c.match.score for c in fitting if not c.entity), default=0.0)
    fitting_ids = {c.unit.id for c in fitting}
    # without a named unit, the words besides the verb must match: "install vaultwarden" is not "install"
    words_only = matching.rank(catalog, " ".join(intent.words)) if not named and intent.words else []
    if not named and (not intent.words or meaning):  # "update all the servers": only the verb and generic words;
        words_only = ranked                           # or scores that blend in meaning ("an ad blocker": pihole)
    own_action = any(c.action == intent.action for c in fitting) if intent.action != "deploy" else \
        not intent.words and any(c.unit.kind == "playbook" and c.unit.playbook is not None and
                                 SAYS_DEPLOY.search(PurePosixPath(c.unit.playbook.name).stem.lower())
                                 for c in fitting)
    if not named and not own_action and \
            max((m.score for m in words_only if m.unit.id in fitting_ids), default=0.0) < matching.MIN_SCORE:
        closest = [f"{c.unit.name} ({c.match.score:.2f})" for c in ranked_c[:3]]
        raise NoMatch(intent.text, closest)
    pool = named or fitting
    best = pool[0] if not named or named[0].match.score >= lexical_best else fitting[0]
    if best.unit.kind == "unused-role":
        applied = [c for c in pool if c.unit.kind != "unused-role" and c.entity == best.entity and c.entity]
        if not applied:
            raise RoleNotApplied(intent.text, best.unit.role_name or best.unit.service, best.unit.source, [])
        best = applied[0]
    distinct: dict[tuple[str, tuple[str, ...], str], Candidate] = {}
    for c in pool:
        if c.unit.kind != "unused-role":
            distinct.setdefault(c.key, c)
    others = [c for c in distinct.values() if c is not best and c.key != best.key]
    rivals = [c for c in others if (c.entity or not best.entity) and best.match.score - c.match.score < CLOSE
              and not _same_thing(best, c)]
    return best, [best, *others], not rivals


def _same_thing(a: Candidate, b: Candidate) -> bool:
    """Two units that run the same thing: one playbook whole and its only tagged entry, or two units of one
    playbook with the same tags."""
    ua, ub = a.unit, b.unit
    if ua.playbook is not ub.playbook:
        return False
    return ua.tags == ub.tags or ua.kind == "playbook" or ub.kind == "playbook"


def understand(catalog: Catalog, request: str, ranked: list[matching.Match], commands: list[Command], *,
               inventory: str | None = None, limit: str | None = None, meaning: bool = False) -> Answer:
    """The :class:`Answer` to ``request`` over ``catalog`` (``ranked`` by :func:`matching.rank`, perhaps
    blended with meaning). Reads the repo's files only (inventories statically, for host names); never runs
    ``ansible-inventory`` and never asks what is installed.

    Raises:
        NoMatch, RoleNotApplied: see :func:`choose`.
        PathOutsideRepo / InvalidInput: ``inventory`` leaves the repo or names no inventory.
    """
    intent = read_intent(request)
    best, distinct, sure = choose(catalog, intent, ranked, commands, meaning)
    return settle(catalog, intent, best, distinct, sure, commands, inventory=inventory, limit=limit)


def settle(catalog: Catalog, intent: Intent, best: Candidate, distinct: list[Candidate], sure: bool,
           commands: list[Command], *, inventory: str | None = None, limit: str | None = None) -> Answer:
    """The :class:`Answer` once ``best`` is chosen (by retrieval, a human at a terminal or a model): its project,
    inventory and limit.

    Raises:
        PathOutsideRepo / InvalidInput: ``inventory`` leaves the repo or names no inventory.
    """
    assert best.unit.playbook is not None
    project = catalog.project_for(best.unit.playbook.name)
    path, source, present, problems = choose_inventory(catalog, project, intent, best, commands, inventory)
    chosen_limit, limit_source = choose_limit(catalog, best, intent, path, limit)
    return Answer(intent, best, distinct, sure, project, path, source, present, chosen_limit, limit_source,
                  problems)


