"""The orchestrator's record tools: ``audit_query`` (the audit trail's git commits) and ``errors`` (incidents
grouped from every part's errors)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastmcp import FastMCP
from pydantic import Field

from chiffon.servers.ansible.server import READ_ONLY
from chiffon.shared.audit import parse_since
from chiffon.shared.runtime import Runtime


def add_record_tools(mcp: FastMCP, rt: Runtime) -> None:
    """Register ``audit_query`` and ``errors`` on ``mcp``, reading ``rt``'s audit log and incidents."""

    @mcp.tool(annotations=READ_ONLY)
    async def audit_query(
        since: str | None = Field(None, description="7d, 12h, 30m, 2w or an ISO date."),
        failed: bool = Field(False, description="Only failed runs."),
        service: str | None = Field(None, description="Only records about this service, e.g. uptime-kuma."),
        plan_id: str | None = Field(None, description="Only records of this plan."),
        kind: Literal["plan", "approval", "rejection", "run", "pause", "resume", "denial", "escalation"] | None = Field(
            None),
        limit: int = Field(50, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        """Audit records (git commits), newest first: 'all failures in the last week', 'all changes to X'."""
        entries = await asyncio.to_thread(
            rt.audit.query, since=parse_since(since) if since else None, failed=failed, service=service,
            plan_id=plan_id, kind=kind, limit=limit)
        return [e.as_dict() for e in entries]

    @mcp.tool(annotations=READ_ONLY)
    async def errors(
        since: str | None = Field(None, description="7d, 12h, 30m, 2w or an ISO date."),
        severity: Literal["info", "warning", "error", "critical"] | None = Field(
            None, description="At least this severity."),
        incident_id: str | None = Field(None, pattern=r"^inc-[0-9a-f]{10}$",
                                        description="One incident, with its recent events."),
        limit: int = Field(50, ge=1, le=500),
    ) -> dict[str, Any]:
        """Incidents: errors from every part (LLM backends, runs, workers, hostd, backups, doctor) grouped by the
        plan, task, host or backend they share, newest first; or one incident with its recent events."""
        from chiffon.orchestrator import incidents as inc

        await inc.Correlator(rt).catch_up()
        if incident_id:
            return {"incident": await inc.incident(rt, incident_id)}
        return {"incidents": await inc.incidents(rt, since=parse_since(since) if since else None, severity=severity,
                                                 limit=limit)}
