"""The console's Plans page: the plans waiting for a decision, one plan's review, and the decision."""

from __future__ import annotations

from typing import Any

import gradio as gr

from chiffon.orchestrator.console import actions
from chiffon.orchestrator.console.actions import Loader, said
from chiffon.orchestrator.console.auth import who
from chiffon.servers.ansible.service import AnsibleService


def plans_page(svc: AnsibleService) -> Loader:
    """Build the Plans tab's contents (inside ``gr.Tab``). Returns the loader of the pending list, run when the page
    loads and after anything else that makes a plan (Undo)."""
    rt = svc.rt
    totp = rt.settings.approvals.totp_secret is not None
    with gr.Row():
        pick = gr.Dropdown(label="Plans waiting for a decision", choices=[], interactive=True, scale=4,
                           elem_id="plan-pick")
        reload_plans = gr.Button("Refresh", scale=1, elem_id="plans-refresh")
    plan_md = gr.Markdown("No plan selected.", elem_id="plan-view")
    code = gr.Textbox(label="One-time code (authenticator app)", visible=totp, elem_id="plan-code")
    comment = gr.Textbox(label="Reason, or the changes you want", lines=2, elem_id="plan-comment")
    with gr.Row():
        approve_btn = gr.Button("Approve", variant="primary", elem_id="approve")
        reject_btn = gr.Button("Reject", variant="stop", elem_id="reject")
        changes_btn = gr.Button("Request changes", elem_id="request-changes")
    outcome = gr.Markdown(elem_id="plan-outcome")

    async def list_pending() -> Any:
        return gr.update(choices=await actions.pending(rt), value=None)

    async def on_approve(plan_id: str, text: str, otp: str, request: gr.Request) -> str:
        return await said(actions.approve(rt, plan_id, who(request), reason=text, code=otp))

    async def on_reject(plan_id: str, text: str, request: gr.Request) -> str:
        return await said(actions.reject(rt, plan_id, who(request), reason=text))

    async def on_changes(plan_id: str, text: str, request: gr.Request) -> str:
        async def replan() -> str:
            new = await actions.request_changes(svc, plan_id, who(request), text)
            return f"Rejected {plan_id} with your comment; the new plan is **{new.id}** (pending)."
        return await said(replan())

    async def show(plan_id: str | None) -> str:
        return await said(actions.show_plan(rt, plan_id))

    reload_plans.click(list_pending, None, pick)
    pick.change(show, pick, plan_md)
    approve_btn.click(on_approve, [pick, comment, code], outcome).then(list_pending, None, pick)
    reject_btn.click(on_reject, [pick, comment], outcome).then(list_pending, None, pick)
    changes_btn.click(on_changes, [pick, comment], outcome).then(list_pending, None, pick)
    return (list_pending, pick)
