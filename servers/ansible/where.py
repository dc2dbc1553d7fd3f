"""Where a chosen unit runs: its inventory and its ``--limit`` (:mod:`servers.ansible.understand` chose the unit).

Inventory, in order: the one given; the environment the request names; the one the owner's commands run the
playbook with (unless it is absent and ``ansible.cfg`` names another); ``ansible.cfg``'s, present or not; the
only one found; the one a committed example becomes. An absent one is still the answer, with the fix.

Limit, in order: the one given; a host or group the request names after on/to that the inventory (read
statically) or a play names; the owner's ``--limit`` for this unit; the play's group when the unit's tag does
not keep the run to that play.
"""

from __future__ import annotations

from pathlib import Path

from chiffon.servers.ansible.candidate import Candidate
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.commands import Command
from chiffon.servers.ansible.intent import Intent, norm, target_words
from chiffon.servers.ansible.inventories import inventory_for_environment, inventory_names
from chiffon.servers.ansible.layout import Project
from chiffon.servers.ansible.unit_words import pattern_names, unit_names


def choose_inventory(catalog: Catalog, project: Project, intent: Intent, best: Candidate,
                     commands: list[Command], wanted: str | None) -> tuple[str | None, str, bool, list[str]]:
    """``(inventory, source, present, problems)`` for a plan of ``best`` in ``project``.

    In order: ``wanted``; the environment the request names; the one the owner's commands run this
    playbook with; ``ansible.cfg``'s (present or not); the only one found; the one a committed example is
    meant to become. ``problems`` says what to do when it is absent, or when several fit and none is named.

    Raises:
        PathOutsideRepo / InvalidInput: ``wanted`` leaves the repo or names no inventory.
    """
    root = catalog.root
    present = list(project.inventories)
    everywhere = present + [c for p in catalog.projects.values() if p is not project for c in p.inventories]
    if wanted:
        view = catalog.using(project, wanted)
        choice = view.inventory_choice
        assert choice is not None  # using() raises for a wanted inventory that is not there
        return choice.path, "given", True, []
    if intent.environment:
        found = inventory_for_environment(present, intent.environment) or \
            inventory_for_environment(everywhere, intent.environment)
        if found is not None:
            return found.path, f"the request names {intent.environment}", True, []
    with_inventory = [c for c in best.commands if c.inventory]
    if not with_inventory and best.unit.playbook is not None:
        with_inventory = [c for c in commands if c.playbook == best.unit.playbook.name and c.inventory]
    if len({c.inventory for c in with_inventory}) == 1 and not (
            project.cfg.inventory and not _exists(root, str(with_inventory[0].inventory))):
        path = with_inventory[0].inventory  # (a command's -i that is not in the repo yields to ansible.cfg's)
        assert path is not None
        return path, f"the repo's {with_inventory[0].source.rsplit(':', 1)[0]} runs it with -i {path}", \
            _exists(root, path), _absent(project, path, root)
    expected = project.expected_inventory(root)
    in_project = [c.inventory for c in commands if c.inventory and
                  catalog.project_for(c.playbook or c.source.rsplit(":", 1)[0]) is project]
    if expected is None and in_project:
        common = max(dict.fromkeys(in_project), key=in_project.count)
        return common, "the repo's commands run its playbooks with -i " + common, _exists(root, common), \
            _absent(project, common, root)
    if expected is not None:
        source = "ansible.cfg" if project.cfg.inventory else \
            "found" if any(c.path == expected for c in present) else "example"
        return expected, source, _exists(root, expected), _absent(project, expected, root)
    if present:
        names = ", ".join(f"{c.name} ({c.path})" for c in present)
        return None, "none", False, [f"several inventories and ansible.cfg names none: {names}; choose one with "
                                     "--inventory NAME (CLI) or the inventory argument (tools)"]
    where = (project.dir + "/") if project.dir else ""
    return None, "none", False, [
        f"no inventory in the repo (looked at {where}ansible.cfg, {where}inventory, {where}inventories/<env>/, "
        f"{where}hosts*, {where}inventory.*): create one, or pass --inventory PATH"]


def _exists(root: Path, path: str) -> bool:
    target = (root / path).resolve()
    return target.is_relative_to(root.resolve()) and target.exists()


def _absent(project: Project, path: str, root: Path) -> list[str]:
    """The fix for an inventory the owner runs with that is not in this checkout."""
    if _exists(root, path):
        return []
    copies = [f"copy {example} to {target}" for example, target in project.examples
              if target == path or target.startswith(path.rstrip("/") + "/") or path.startswith(target + "/")]
    copies = copies or [f"copy {example} to {target}" for example, target in project.examples]
    fix = copies[0] if copies else f"create {path}"
    return [f"inventory {path} is not in this checkout (gitignored or not yet written): {fix}, or pass --inventory "
            "PATH"]


def choose_limit(catalog: Catalog, best: Candidate, intent: Intent, inventory: str | None,
                 wanted: str | None) -> tuple[str | None, str | None]:
    """``(limit, source)``, in order: ``wanted``; a host or group the request names ("on the Pis", "on
    raspi1") that the inventory or a play names; the owner's command's ``--limit`` for this unit (one that
    runs it by its tag or limits it to its name); the play's group when the unit's tag does not keep the run to
    that play (no tag, or the role applied by other plays too) and the playbook's plays target different hosts;
    else None."""
    if wanted:
        return wanted, "given"
    unit = best.unit
    known: dict[str, str] = {}
    for pattern in (unit.playbook.host_patterns if unit.playbook else ()):
        for name in pattern_names(pattern):
            known.setdefault(norm(name), name)
    if inventory is not None and _exists(catalog.root, inventory):
        for name in sorted(inventory_names(catalog.root / inventory, catalog.root)):
            known.setdefault(norm(name), name)
    own = unit_names(unit) | {norm(t) for t in unit.tags}
    targets = sorted((e for e in target_words(intent.text) if e in known and e not in own and e != best.entity),
                     key=len, reverse=True)
    if targets:  # "on the Pis", "on raspi1": said, so shown, even where the play targets just that
        return known[targets[0]], "the request names it"
    limits = list(dict.fromkeys(c.limit for c in best.commands if c.limit and (
        set(c.tags) & set(unit.tags) or {norm(p) for p in pattern_names(c.limit)} & (own | {best.entity}))))
    if len(limits) == 1:
        return limits[0], f"the repo's {best.commands[0].source.rsplit(':', 1)[0]}"
    whole = next((u for u in catalog.units if u.kind == "playbook" and u.playbook is unit.playbook), None)
    if unit.playbook is not None and unit.kind != "playbook" and unit.hosts and best.entity and \
            (whole is None or best.entity not in unit_names(whole)) and len(set(unit.playbook.host_patterns)) > 1:
        elsewhere = [u for u in catalog.units if u.playbook is unit.playbook and u is not unit
                     and u.role_name == unit.role_name and u.kind == unit.kind]
        if not unit.tags or elsewhere:
            hosts = ",".join(unit.hosts)
            if hosts not in ("all", "*", "localhost"):
                return hosts, "the play that applies it (its tag does not keep the run to that play)"
    return None, None
