"""MCP server ``chiffon-ansible``: the playbook catalog, check mode, and approved runs.

Tools only wire MCP to the logic in ``catalog``, ``matching``, ``plans``,
``review`` and ``scaffold``. Read-only tools are annotated so; ``run`` is the
only destructive one and refuses any plan a human has not approved.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from chiffon.servers.ansible import drift as drift_check
from chiffon.servers.ansible import execution, matching, plans, review, scaffold, undo_plan, units
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.service import AnsibleService, progress_reporter
from chiffon.shared.errors import ConfigError
from chiffon.shared.mcp import ChiffonErrors
from chiffon.shared.redact import redact

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
# Check mode is not read-only: tasks with `check_mode: false` run for real (the plan lists them), and a plan,
# a repo snapshot and an audit commit are written.
CHECK = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=True)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=True)
WRITES_REPO = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)


class PlaybookSummary(BaseModel):
    """A playbook in the catalog."""

    name: str = Field(description="Path relative to the repo, e.g. deploy-redis.yml.")
    description: str = Field(description="First comment line of the file.")
    service: str = Field(description="Service it manages, from the file name.")
    tags: list[str]
    hosts: list[str] = Field(description="Host patterns of its plays.")
    tasks: int = Field(description="Number of tasks.")


class PlaybookDetail(PlaybookSummary):
    """A playbook with its tasks, variables and the inventory hosts it targets."""

    task_list: list[dict[str, str]] = Field(description="[{name, module}] in order.")
    variables: list[str] = Field(description="Play variables a caller may override with extra_vars.")
    target_hosts: list[str] = Field(description="Inventory hosts its host patterns select.")


class InventoryView(BaseModel):
    """The inventory: groups with their hosts, and each host's variables (secrets redacted)."""

    inventory: str
    inventories: list[dict[str, str]] = Field(description="Every inventory found: {name, path, source}.")
    groups: dict[str, list[str]]
    hostvars: dict[str, dict[str, Any]]


class ServiceRow(BaseModel):
    """One service the repo deploys: through which playbook and tags, on which hosts, under which condition."""

    service: str
    kind: str = Field(description="role, tasks (an imported task file), playbook, or unused-role.")
    playbook: str | None = Field(description="Playbook that applies it; null when none does.")
    tags: list[str] = Field(description="--tags that select it.")
    hosts: list[str] = Field(description="Host patterns of its play (or hosts its condition names).")
    targets: list[str] = Field(description="Inventory hosts those patterns select.")
    when: list[str] = Field(description="Conditions it runs under (jellyfin_enabled | default(false)...).")
    source: str = Field(description="Role folder or task file, relative to the repo.")


class MatchView(BaseModel):
    """A ranked candidate for a request: a playbook, or a role/task file its tags select."""

    playbook: str | None = Field(description="Playbook path; null for a role that no playbook applies.")
    tags: list[str] = Field(description="--tags that select the unit; empty: the whole playbook.")
    unit: str = Field(description="Unit id (playbook, playbook::role:NAME, playbook::tasks:FILE, role:PATH).")
    kind: str = Field(description="playbook, role, tasks or unused-role.")
    service: str
    description: str
    score: float = Field(description="Share of the request's information covered, 0..1.")
    reason: str


def create_ansible_server(svc: AnsibleService) -> FastMCP:
    """The ``chiffon-ansible`` server bound to ``svc`` (runtime + IaC repo)."""
    mcp = FastMCP(
        "chiffon-ansible",
        instructions=(
            "Ansible playbooks of the homelab IaC repo. Use find_playbooks or list_playbooks, then check to "
            "preview (check mode + diff, stored as a plan). run executes only a plan a human approved."
        ),
        mask_error_details=True,
    )
    mcp.add_middleware(ChiffonErrors())

    @mcp.tool(annotations=READ_ONLY)
    async def list_playbooks() -> list[PlaybookSummary]:
        """Every playbook in the IaC repo with its description, service, tags and host patterns."""
        catalog = await svc.catalog()
        return [PlaybookSummary(**pb.summary()) for pb in catalog.playbooks.values()]

    @mcp.tool(annotations=READ_ONLY)
    async def describe_playbook(playbook: str = Field(description="Playbook path relative to the repo.")) -> PlaybookDetail:
        """One playbook in detail: tasks (name, module), variables and the inventory hosts it targets."""
        catalog = await svc.catalog()
        pb = catalog.get(playbook)
        targets = await asyncio.to_thread(catalog.hosts_matching, ",".join(pb.host_patterns))
        return PlaybookDetail(
            **pb.summary(), task_list=[{"name": t.name, "module": t.module} for t in pb.tasks],
            variables=list(pb.variables), target_hosts=targets,
        )

    @mcp.tool(annotations=READ_ONLY)
    async def inventory(
        name: str | None = Field(None, description="Inventory name or path in the repo; default: ansible.cfg's."),
    ) -> InventoryView:
        """Groups, hosts and host variables of an inventory (secrets redacted), and every inventory found."""
        catalog = await svc.catalog(inventory=name)
        groups = await asyncio.to_thread(catalog.groups)
        return InventoryView(
            inventory=catalog.inventory, inventories=[c.as_dict() for c in catalog.inventories], groups=groups,
            hostvars={h: redact(catalog.hostvars(h)) for h in groups.get("all", [])},
        )

    @mcp.tool(annotations=READ_ONLY)
    async def find_playbooks(
        request: str = Field(description="Plain-language request, e.g. 'Deploy Uptime Kuma'."),
        k: int = Field(5, ge=1, le=50, description="How many candidates to return."),
    ) -> list[MatchView]:
        """Units (playbooks, and roles or task files their tags select) ranked for a request, best first, with a
        score in [0, 1] and the reason."""
        catalog = await svc.catalog()
        return [MatchView(**m.as_dict()) for m in matching.rank(catalog, matching.validate_request(request))[:k]]

    @mcp.tool(annotations=READ_ONLY)
    async def services(
        host: str | None = Field(None, description="Only services that target this inventory host."),
        inventory: str | None = Field(None, description="Inventory name or path; default: ansible.cfg's."),
    ) -> list[ServiceRow]:
        """What runs where: each service the repo deploys, through which playbook and tags, on which hosts and
        under which condition; roles that no playbook applies are listed with playbook null."""
        catalog = await svc.catalog(inventory=inventory)
        resolve = catalog.hosts_matching if catalog.inventory_name else None
        rows = await asyncio.to_thread(units.services, catalog.units, resolve, host)
        return [ServiceRow(**row) for row in rows]

    @mcp.tool(annotations=CHECK)
    async def check(
        ctx: Context,
        playbook: str = Field(description="Playbook path relative to the repo."),
        tags: list[str] | None = Field(None, description="--tags: select one role or task file (see services)."),
        skip_tags: list[str] | None = Field(None, description="--skip-tags."),
        limit: str | None = Field(None, description="--limit host/group pattern."),
        extra_vars: dict[str, Any] | None = Field(None, description="Extra vars; passed literally, never templated."),
        inventory: str | None = Field(None, description="Inventory name or path; default: ansible.cfg's."),
    ) -> plans.Plan:
        """Run the playbook in check mode with --diff and store it as a plan. Check mode changes nothing on the
        hosts except tasks written with ``check_mode: false``, which run for real; the plan's warnings list them.

        Returns the plan: tags, inventory, hosts, predicted diff, risk, warnings, blocked_reason and status
        ``pending_approval``.
        """
        asked = PlanRequest(inventory=inventory, limit=limit, tags=tags, skip_tags=skip_tags, extra_vars=extra_vars)
        catalog = await svc.catalog(inventory=asked.inventory)
        pb = catalog.get(playbook)
        return await plans.create_plan(svc.rt, catalog, pb.name, asked,
                                       on_event=progress_reporter(ctx, len(pb.tasks), "check"))

    @mcp.tool(annotations=CHECK)
    async def drift(
        ctx: Context,
        inventory: str | None = Field(None, description="Inventory name or path; default: each project's own."),
    ) -> drift_check.DriftReport:
        """Check mode of every unit of the IaC repo, one host group at a time: where the hosts no longer match the
        repo. Returns the stored report: ``drifted`` (per unit and host, the tasks that would change, with a
        one-line summary and the masked diff), ``never_run`` (units chiffon never ran: not drift), ``clean`` and
        ``errors`` (units that could not be checked, with the fix). No plan is stored; new drift opens an incident.
        Changes nothing on the hosts except tasks written with ``check_mode: false``, which run for real. Takes
        minutes on a large repo: progress is reported per unit.
        """
        catalog = await svc.catalog(inventory=inventory)

        async def progress(done: int, total: int, name: str) -> None:
            await ctx.report_progress(done, total, f"drift: checked {name}")

        return await drift_check.run_drift(svc.rt, catalog, inventory=inventory or svc.inventory,
                                           on_progress=progress, notify=svc.notify_drift)

    @mcp.tool(annotations=DESTRUCTIVE)
    async def run(ctx: Context, plan_id: str = Field(description="Id of an approved plan.")) -> execution.RunResult:
        """Run an approved plan for real, streaming each task as progress. Refuses unapproved plans.

        Goes through the same queue as execute_plan (``run_plan``, given by the composition root): an infra
        worker runs it once its hosts are free; a busy host pauses it.
        """
        plan = await plans.get_plan(svc.rt, plan_id)
        if plan.status not in ("approved", "paused"):
            raise execution.not_runnable(plan)
        if svc.run_plan is None:
            raise ConfigError("this ansible server was started without the run queue; run plans through "
                              "`chiffon serve` (execute_plan) or `chiffon execute`")
        total = len((plan.check_result or {}).get("events", []))
        return await svc.run_plan(svc.rt, plan_id, on_event=progress_reporter(ctx, total, "run"))

    @mcp.tool(annotations=READ_ONLY)
    async def run_events(
        run_id: str = Field(description="Run id from run or execute_plan."),
        after_seq: int = Field(0, ge=0, description="Only events after this sequence number."),
        limit: int = Field(500, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        """Stored task events of a run, in order: seq, status, host, task, module, changed, message."""
        return await execution.run_events(svc.rt, run_id, after_seq=after_seq, limit=limit)

    @mcp.tool(annotations=CHECK)
    async def undo_run(
        ctx: Context,
        run_id: str = Field(description="Id of a finished run (run- and 10 hex digits), e.g. from run or run_events."),
    ) -> undo_plan.UndoPlan:
        """Plan the undo of a finished run: a generated playbook that puts back the files the run changed (their
        earlier content, mode and owner; what it created is removed), from the before-states the run kept. It is
        checked in check mode and stored as a plan pending a human's approval, like any plan; it runs through run
        or execute_plan once approved. What cannot be undone this way (packages, commands, services, containers)
        is in ``not_reversible`` and the plan's warnings. Refuses a run that has not ended or kept nothing.
        """
        return await undo_plan.plan_undo(svc, run_id, on_event=progress_reporter(ctx, None, "check"))

    @mcp.tool(annotations=READ_ONLY)
    async def suggest_improvements(playbook: str = Field(description="Playbook path relative to the repo.")) -> list[review.Finding]:
        """ansible-lint findings plus chiffon's own (portals without a monitor, untagged plays...)."""
        catalog = await svc.catalog()
        pb = catalog.get(playbook)
        found = await asyncio.to_thread(review.chiffon_findings, catalog, pb)
        if svc.rt.settings.ansible.lint:
            found += await asyncio.to_thread(review.lint_findings, catalog, pb)
        return found

    @mcp.tool(annotations=WRITES_REPO)
    async def new_playbook(
        kind: str = Field(description="service (deploy with Docker Compose) or config (update a config file)."),
        service: str = Field(description="Service name, lower-case with dashes, e.g. uptime-kuma."),
        host: str = Field(description="Inventory host or group to target."),
        write: bool = Field(False, description="Write it into the repo (never overwrites)."),
    ) -> scaffold.NewPlaybook:
        """Generate a playbook from a template and validate it with ansible-playbook --syntax-check."""
        catalog = await svc.catalog()
        return await asyncio.to_thread(scaffold.new_playbook, catalog, kind, service, host, write=write)

    return mcp
