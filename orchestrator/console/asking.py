"""A request typed on the console's Plans page, planned by the one planner (:func:`orchestrator.planner.plan_request`)
like the CLI, the IDE's tool and REST do, with no web framework code.

The repo is one the console knows (:func:`approving.repo_choices`), never a path typed on the page. When the
planner cannot tell candidates apart, nothing is checked: :class:`NeedsChoice` lists them, and the request is
asked again with the one the human picked (``choice``: a unit id), which the planner then uses. When nothing
matches, :class:`NeedsChoice` lists the closest playbooks, and picking one checks that playbook for the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chiffon.orchestrator.console.approving import check_repo
from chiffon.orchestrator.planner import plan_request
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.candidate import Candidate
from chiffon.servers.ansible.events import EventCallback
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput, NoMatch, RoleNotApplied

DIRECT = "unit:"  # a choice among NoMatch's closest: that unit is checked for the request as it is
_SCORE = re.compile(r" \(\d+(\.\d+)?\)$")  # NoMatch's closest are "NAME (0.12)"


class NeedsChoice(InvalidInput):
    """The request names several units equally (or none well): ``choices`` are ``(label, value)`` pairs to pick
    from, ``value`` a unit id or ``playbook:NAME``; nothing was checked or stored."""

    def __init__(self, message: str, choices: list[tuple[str, str]]) -> None:
        self.choices = choices
        super().__init__("request", message)


@dataclass
class ConsoleRequest:
    """What the console's request box sends: the request, the repo (one of ``allowed``), and optional inventory,
    ``--limit`` and ``--tags`` (comma-separated)."""

    request: str
    repo: str | None
    inventory: str = ""
    limit: str = ""
    tags: str = ""
    allowed: list[str] = field(default_factory=list)

    def tag_list(self) -> list[str] | None:
        """The tags as a list (commas or spaces between them); None when none were given."""
        found = [t for t in re.split(r"[,\s]+", self.tags.strip()) if t]
        return found or None

    def plan_request(self) -> PlanRequest:
        """The one request object the planner gets: the repo checked against ``allowed``, blanks as None.

        Raises:
            InvalidInput: the repo is not one the console knows.
        """
        return PlanRequest(request=self.request.strip(), repo=check_repo(self.repo, self.allowed),
                           limit=self.limit.strip() or None, inventory=self.inventory.strip() or None,
                           tags=self.tag_list())


def _label(c: Candidate) -> str:
    m = c.match.as_dict()
    tags = f" --tags {','.join(m['tags'])}" if m["tags"] else ""  # type: ignore[arg-type]
    about = f": {m['description']}" if m.get("description") else ""
    return f"{m['playbook']}{tags}{about}"[:200]


async def ask(svc: AnsibleService, req: ConsoleRequest, *, choice: str | None = None,
              on_event: EventCallback | None = None) -> plans.Plan:
    """Plan ``req`` with the planner (check mode, stored pending approval) and return the plan.

    ``choice``: what the human picked after a :class:`NeedsChoice`: a unit id among the planner's candidates, or
    ``unit:ID`` among the closest when nothing matched (that unit's playbook and tags are checked for the request). ``on_event``: each check-mode task result, for progress.

    Raises:
        InvalidInput: the repo is not one the console knows, an empty or over-long request, bad limit, tags or
            inventory.
        NeedsChoice: several units fit equally, or none fits (its ``choices``); nothing was checked.
        RoleNotApplied: the request names a role no playbook applies (its message says how to plan it).
        RepoError, AnsibleError: the repo cannot be read, ansible-runner cannot start.
    """
    asked = req.plan_request()
    repo = asked.repo
    if choice and choice.startswith(DIRECT):
        catalog = await svc.catalog(repo, asked.inventory)
        unit = catalog.unit(choice.removeprefix(DIRECT))
        if unit.playbook is None:
            raise InvalidInput("choice", f"{unit.name} is a role no playbook applies; ask for it by name")
        direct = PlanRequest(request=asked.request, limit=asked.limit, tags=asked.tags or list(unit.tags))
        return await plans.create_plan(svc.rt, catalog, unit.playbook.name, direct, on_event=on_event)

    async def pick(rivals: list[Candidate]) -> Candidate | None:
        if choice:
            chosen = next((c for c in rivals if c.unit.id == choice), None)
            if chosen is not None:
                return chosen
        raise NeedsChoice("the request fits several parts of the repo equally; pick one",
                          [(_label(c), c.unit.id) for c in rivals])

    try:
        return await plan_request(svc, asked, on_event=on_event, pick=pick)
    except RoleNotApplied:
        raise
    except NoMatch as exc:
        catalog = await svc.catalog(repo)
        names = {_SCORE.sub("", name) for name in exc.closest}
        closest = [u for u in catalog.units if u.playbook is not None and u.name in names]
        if not closest:
            raise
        raise NeedsChoice(f"no playbook matches {asked.request!r} well; pick the closest, or rephrase",
                          [(u.name, DIRECT + u.id) for u in closest]) from None
