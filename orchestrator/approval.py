"""Asking a human to approve a plan over MCP.

Three ways, chosen by what the connected client can do:

* handshake-era clients that declare elicitation: ``ctx.elicit`` shows a form;
* 2026-07-28 clients that declare elicitation: the guard pattern, the tool returns
  an ``InputRequiredResult`` carrying the form and reads the answer from
  ``ctx.input_responses`` when the client calls again (the plan id rides in the
  sealed ``request_state`` so an answer cannot be replayed onto another plan);
* anything else: the plan stays pending and the caller is told to run
  ``chiffon approve <id>`` in a terminal.

Accept with ``approve: true`` records an approval, decline records a rejection,
cancel leaves the plan pending. With TOTP set up the form's ``code`` must be the current
one-time code (:mod:`shared.totp`). Only :func:`servers.ansible.plans.decide` records.

Whoever answers the form is whatever the client is: the IDE showing it to a person, or a script the model
spawned that names itself "Claude Desktop" and answers ``approve: true``. So the record is the client's word,
``client-asserted "NAME"`` (:func:`client_asserted`), never "human"; only a valid one-time code, which
:func:`~servers.ansible.plans.decide` marks `` + totp``, proves a human.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from fastmcp import Context
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from chiffon.servers.ansible.plans import Plan

APPROVAL_KEY = "chiffon_approval"
MAX_DIFF_CHARS = 4000


class ApprovalForm(BaseModel):
    """What the human fills in."""

    approve: bool = Field(description="Run this plan now?")
    reason: str = Field("", description="Optional note for the audit trail.")
    code: str = Field("", description="Current one-time code from your authenticator app (needed when the "
                                      "operator set up TOTP).")


@dataclass(frozen=True)
class Answer:
    """The human's answer: ``approved``, ``rejected`` or ``pending`` (cancelled / no way to ask)."""

    decision: Literal["approved", "rejected", "pending"]
    channel: str
    reason: str | None = None
    code: str | None = None


def approval_message(plan: Plan) -> str:
    """The text shown to the human: what runs where (playbook, tags, inventory, limit, extra vars), the risk,
    the warnings, a generated playbook in full, and the predicted diff."""
    diff = plan.diff if len(plan.diff) <= MAX_DIFF_CHARS else (
        plan.diff[:MAX_DIFF_CHARS] + f"\n... (diff cut at {MAX_DIFF_CHARS} characters; the whole diff: "
        f"`chiffon status {plan.id}` or the plan_status tool)")
    lines = [
        f"Approve plan {plan.id}?",
        f"Playbook: {plan.playbook}" + (f" --tags {','.join(plan.tags)}" if plan.tags else " (all of it)")
        + (f" --skip-tags {','.join(plan.skip_tags)}" if plan.skip_tags else ""),
        f"Inventory: {plan.inventory}; hosts: {', '.join(plan.hosts) or 'none'}"
        + (f"; limit: {plan.host_limit}" if plan.host_limit else "; limit: none"),
        f"Repo snapshot: {plan.snapshot_digest or 'none'} (what was checked is what runs)",
    ]
    if plan.extra_vars:
        lines.append(f"Extra vars: {', '.join(f'{k}={v!r}' for k, v in plan.extra_vars.items())}")
    lines.append(f"Risk: {plan.risk} ({'; '.join(plan.risk_reasons)})")
    lines += [f"Warning: {w}" for w in plan.warnings]
    if plan.generated_playbook:
        lines.append(f"Generated playbook (runs from the plan; nothing is written to the repo):\n"
                     f"{plan.generated_playbook}")
    changed = plan.check_result.get("changed", 0) if plan.check_result else 0
    lines.append(f"Check mode predicts {changed} change(s):\n{diff}")
    return "\n".join(lines)


MAX_CLIENT_NAME = 64


def client_asserted(ctx: Context) -> str:
    """``client-asserted "NAME"``: the name the connected client gave itself (``clientInfo.name``; JSON-quoted,
    so quotes and control characters stay inside it, and cut at :data:`MAX_CLIENT_NAME` characters), or
    ``client-asserted "unnamed"``. It is what the client says, proof of nothing."""
    try:
        params = ctx.session.client_params
        name = params.client_info.name if params is not None else ""
    except (RuntimeError, AttributeError):
        name = ""
    return f"client-asserted {json.dumps((name or 'unnamed')[:MAX_CLIENT_NAME])}"


def client_can_elicit(ctx: Context) -> bool:
    """True when the connected client declared the elicitation capability."""
    try:
        caps = ctx.session.client_capabilities
    except (RuntimeError, AttributeError):
        return False
    return caps is not None and caps.elicitation is not None


def is_modern(ctx: Context) -> bool:
    """True on a 2026-07-28 connection (no server-initiated requests; use the guard pattern)."""
    rc = ctx.request_context
    return rc is not None and rc.protocol_version in MODERN_PROTOCOL_VERSIONS


def _from_form(action: str, content: dict | None, channel: str) -> Answer:
    if action == "accept" and content is not None:
        form = ApprovalForm.model_validate(content)
        return Answer("approved" if form.approve else "rejected", channel, form.reason or None, form.code or None)
    if action == "decline":
        return Answer("rejected", channel, "declined in the approval dialog")
    return Answer("pending", channel)


def guard_answer(ctx: Context, plan: Plan) -> Answer | InputRequiredResult:
    """Guard pattern, one round: the answer if the client sent one for this plan, else the request."""
    responses = ctx.input_responses or {}
    response = responses.get(APPROVAL_KEY)
    if isinstance(response, ElicitResult) and ctx.request_state == plan.id:
        return _from_form(response.action, response.content, "mcp-guard")
    schema = ApprovalForm.model_json_schema()
    request = ElicitRequest(
        params=ElicitRequestFormParams(
            message=approval_message(plan),
            requested_schema={"type": "object", "properties": schema["properties"], "required": ["approve"]},
        )
    )
    return InputRequiredResult(input_requests={APPROVAL_KEY: request}, request_state=plan.id)


async def elicit_answer(ctx: Context, plan: Plan) -> Answer:
    """Handshake-era elicitation: ask and wait for the form."""
    result = await ctx.elicit(approval_message(plan), response_type=ApprovalForm)
    content = result.data.model_dump() if result.action == "accept" else None
    return _from_form(result.action, content, "mcp-elicitation")
