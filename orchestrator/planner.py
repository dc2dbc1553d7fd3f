"""Turn a plain-language request into a stored plan.

Matching is retrieval over the playbook catalog (``servers.ansible.matching``);
the best candidate above :data:`~servers.ansible.matching.MIN_SCORE` is
previewed in check mode and stored as a plan awaiting approval. A request that
matches nothing is refused with the closest playbooks named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servers.ansible import matching, plans
from servers.ansible.runner import EventCallback
from servers.ansible.service import AnsibleService
from shared.errors import NoMatch


async def plan_request(
    svc: AnsibleService,
    request: str,
    *,
    repo: Path | None = None,
    limit: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    on_event: EventCallback | None = None,
) -> plans.Plan:
    """Match ``request`` to a playbook, run it in check mode and store the plan.

    Raises:
        InvalidInput: empty or over-long request, bad limit or extra_vars.
        NoMatch: no playbook scores at least MIN_SCORE; the closest are listed.
        RepoError: the repo is not a git repo or has no playbooks.
    """
    request = matching.validate_request(request)
    catalog = await svc.catalog(repo)
    ranked = matching.rank(catalog, request)
    best = ranked[0]
    if best.score < matching.MIN_SCORE:
        raise NoMatch(request, [f"{m.playbook.name} ({m.score:.2f})" for m in ranked[:3]])
    return await plans.create_plan(
        svc.rt, catalog, best.playbook.name, request=request, match=best, alternatives=ranked[1:3],
        limit=limit, extra_vars=extra_vars, on_event=on_event,
    )
