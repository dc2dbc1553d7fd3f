"""The console's Plans page: the plans waiting for a decision (live), a request box, one plan's review, and the
decision in an action bar that stays in view.

The page's rules and views live in :mod:`.approving` (pending table, review, typed confirmation of a high-risk
plan, recap), :mod:`.review` (the diff and warnings as HTML) and :mod:`.asking` (a request planned by the one
planner); decisions go through :mod:`.actions`. Here is only the wiring to Gradio.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from chiffon.orchestrator.console import actions, approving, asking
from chiffon.orchestrator.console.actions import Loader
from chiffon.orchestrator.console.auth import who
from chiffon.orchestrator.console.review import risk_badge
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.events import TaskEvent
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError

NO_PLAN = '<p class="cf-none">No plan selected: click a row of the table above, or ask for a change.</p>'
NO_BADGE = '<span class="cf-risk cf-risk-unknown">no plan selected</span>'
# the browser tab's title counts the plans waiting: "(2) chiffon console" (read from #pending-count's data)
TITLE_JS = """
const base = document.title.replace(/^\\(\\d+\\) /, '') || 'chiffon console';
const paint = () => {
  const found = element.querySelector('[data-pending]');
  const n = found ? parseInt(found.getAttribute('data-pending'), 10) || 0 : 0;
  const want = n > 0 ? '(' + n + ') ' + base : base;
  if (document.title !== want) { document.title = want; }
};
paint();
setInterval(paint, 500);
"""


@dataclass
class PlansPage:
    """What :func:`plans_page` hands the app: ``loader`` (refresh the pending table and the repos; run on load and
    after anything else makes a plan), ``follow`` (the button shown after an approval: the app opens the Runs tab
    on the plan's run) and ``selected`` (the selected plan's id, a ``gr.State``)."""

    loader: Loader
    follow: Any
    selected: Any


def count_html(n: int) -> str:
    """The pending count above the table; its ``data-pending`` is what the tab title shows."""
    return (f'<p class="cf-count" data-pending="{n}"><b>{n}</b> plan(s) waiting for your decision'
            f'{"" if n else ": nothing to review"}</p>')


def refused(exc: Exception) -> str:
    """A refusal as HTML, its message escaped."""
    return f'<p class="cf-refused"><b>Refused:</b> {html.escape(str(exc))}</p>'


def plans_page(svc: AnsibleService, links: dict[str, Any]) -> PlansPage:
    """Build the Plans tab's contents (inside ``gr.Tab``): the live pending table, the request box, the review
    and the action bar; ``links["review"]`` is the hidden box a ``?review=ID`` link fills (:mod:`.links`), which opens
    that plan's review. Returns the :class:`PlansPage` the app wires to the other pages and to links."""
    rt = svc.rt
    totp = rt.settings.approvals.totp_secret is not None
    count = gr.HTML(count_html(0), elem_id="pending-count", js_on_load=TITLE_JS)
    table = gr.Dataframe(value={"headers": approving.PENDING_HEADERS, "data": []}, headers=approving.PENDING_HEADERS,
                         interactive=False, wrap=True, elem_id="plans-pending", label="Click a plan to review it",
                         max_height=320)
    shown_rows = gr.State(None)  # the rows this browser shows, so a tick that changes nothing redraws nothing
    with gr.Accordion("Ask for a change", open=True, elem_id="ask"):
        ask_text = gr.Textbox(label="Request", lines=2, elem_id="ask-request",
                              placeholder="Deploy Uptime Kuma and add the existing portals to its config")
        with gr.Row():
            ask_repo = gr.Dropdown(label="Repo", choices=[], interactive=True, elem_id="ask-repo", min_width=200)
            ask_inventory = gr.Textbox(label="Inventory (optional)", elem_id="ask-inventory", min_width=120)
            ask_limit = gr.Textbox(label="Limit (optional)", elem_id="ask-limit", min_width=120)
            ask_tags = gr.Textbox(label="Tags (optional)", elem_id="ask-tags", min_width=120)
        ask_choice = gr.Radio(label="Which did you mean?", choices=[], visible=False, elem_id="ask-choices")
        ask_btn = gr.Button("Plan it (check mode, changes nothing)", variant="primary", elem_id="ask-plan")
        ask_note = gr.HTML(elem_id="ask-note")
    selected = gr.State(None)
    links["review"] = linked = gr.Textbox(visible=False, elem_id="review-link")
    view = gr.HTML(NO_PLAN, elem_id="plan-view")
    with gr.Column(elem_id="plan-actions"):
        with gr.Row(equal_height=True):
            badge = gr.HTML(NO_BADGE, elem_id="plan-risk", min_width=120)
            confirm = gr.Textbox(label="High risk: type one of its hosts or the plan id to confirm", visible=False,
                                 elem_id="plan-confirm", min_width=200)
            code = gr.Textbox(label="One-time code (authenticator app)", visible=totp, elem_id="plan-code",
                              min_width=160)
            comment = gr.Textbox(label="Reason, or the changes you want", elem_id="plan-comment", min_width=200)
        with gr.Row():
            approve_btn = gr.Button("Approve", variant="primary", interactive=False, elem_id="approve", min_width=90)
            reject_btn = gr.Button("Reject", variant="stop", interactive=False, elem_id="reject", min_width=90)
            changes_btn = gr.Button("Request changes", interactive=False, elem_id="request-changes", min_width=90)
        outcome = gr.HTML(elem_id="plan-outcome")
        follow = gr.Button("Follow the run on the Runs page", visible=False, elem_id="plan-follow")
    review = [selected, view, badge, confirm, approve_btn, reject_btn, changes_btn, outcome, follow]

    async def pending_now() -> tuple[Any, str, list[list[str]]]:
        rows = approving.pending_rows(await plans.listing(rt, ["pending_approval"], limit=100))
        return {"headers": approving.PENDING_HEADERS, "data": rows}, count_html(len(rows)), rows

    async def tick(shown: list[list[str]] | None) -> Any:
        table_value, count_value, rows = await pending_now()
        if rows == shown:  # nothing new: leave the table (and a click on it) alone
            return gr.skip(), gr.skip(), gr.skip()
        return table_value, count_value, rows

    async def repos() -> Any:
        recorded = [p.repo for p in await plans.listing(rt, limit=100)]
        allowed = approving.repo_choices(svc.repo, recorded)
        return gr.update(choices=allowed, value=allowed[0] if allowed else None)

    async def open_plan(plan_id: str | None, note: str = "") -> tuple[Any, ...]:
        """The review outputs (``review``) for ``plan_id``; every button off when none is selected."""
        off = gr.update(interactive=False)
        if not plan_id:
            return None, NO_PLAN, NO_BADGE, gr.update(visible=False, value=""), off, off, off, note, \
                gr.update(visible=False)
        try:
            plan = await plans.get_plan(rt, plan_id)
        except ChiffonError as exc:
            return None, refused(exc), NO_BADGE, gr.update(visible=False), off, off, off, note, gr.update(visible=False)
        pending = plan.status == "pending_approval"
        high = approving.needs_confirmation(plan)
        bar = risk_badge(plan.risk) + f' <span class="cf-bar-id">{html.escape(plan.id)} · {html.escape(plan.status)}'
        bar += (" · type a host or the id to approve</span>" if pending and high else "</span>")
        return (plan.id, approving.plan_html(plan), bar, gr.update(visible=pending and high, value=""),
                gr.update(interactive=pending and not high and not plan.blocked_reason),
                gr.update(interactive=pending), gr.update(interactive=pending), note, gr.update(visible=False))

    async def on_row(evt: gr.SelectData) -> tuple[Any, ...]:
        row = evt.row_value or []
        return await open_plan(str(row[-1]) if row else None)

    async def on_confirm(plan_id: str | None, typed: str) -> Any:
        try:
            plan = await plans.get_plan(rt, plan_id or "")
        except ChiffonError:
            return gr.update(interactive=False)
        ok = plan.status == "pending_approval" and not plan.blocked_reason and approving.confirmed(plan, typed)
        return gr.update(interactive=ok)

    async def on_approve(plan_id: str | None, text: str, otp: str, typed: str, request: gr.Request) -> tuple[Any, ...]:
        operator = who(request)
        try:
            await actions.approve(rt, plan_id or "", operator, reason=text, code=otp, confirm=typed)
            plan = await plans.get_plan(rt, plan_id or "")
        except ChiffonError as exc:  # nothing changed: the selection and the review stay as they are
            return (*(gr.skip() for _ in review[:7]), refused(exc), gr.skip())
        opened = await open_plan(plan.id, approving.recap_html(plan, operator))
        return (*opened[:8], gr.update(visible=True))

    async def on_reject(plan_id: str | None, text: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            said = await actions.reject(rt, plan_id or "", who(request), reason=text)
        except ChiffonError as exc:
            return (*(gr.skip() for _ in review[:7]), refused(exc), gr.skip())
        return await open_plan(plan_id, f"<p>{html.escape(said)}</p>")

    def progress_of(progress: gr.Progress) -> Any:
        async def report(event: TaskEvent) -> None:
            progress((event.seq, None), desc=f"check: {event.task[:60]} [{event.host}]")
        return report

    async def on_changes(plan_id: str | None, text: str, request: gr.Request,
                         progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        progress(0, desc="planning again with your comment")
        try:
            new = await actions.request_changes(svc, plan_id or "", who(request), text)
        except ChiffonError as exc:  # a refusal keeps the plan selected, as it was
            return (*(gr.skip() for _ in review[:7]), refused(exc), gr.skip())
        return await open_plan(new.id, f"<p>Rejected {html.escape(plan_id or '')} with your comment; the new plan "
                                       f"is <b>{html.escape(new.id)}</b> (pending).</p>")

    async def on_ask(text: str, repo: str | None, inventory: str, limit: str, tags: str, choice: str | None,
                     progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        progress(0, desc="matching the request to the repo")
        allowed = approving.repo_choices(svc.repo, [p.repo for p in await plans.listing(rt, limit=100)])
        req = asking.ConsoleRequest(text or "", repo, inventory or "", limit or "", tags or "", allowed)
        try:
            plan = await asking.ask(svc, req, choice=choice or None, on_event=progress_of(progress))
        except asking.NeedsChoice as exc:
            return (*(gr.skip() for _ in review), f"<p>{html.escape(str(exc))}</p>",
                    gr.update(choices=exc.choices, value=None, visible=True))
        except ChiffonError as exc:
            return (*(gr.skip() for _ in review), refused(exc), gr.update(visible=False, value=None))
        note = (f"<p>Planned <b>{html.escape(plan.id)}</b>: {html.escape(plan.playbook)} on "
                f"{html.escape(', '.join(plan.hosts) or 'no hosts')}, {html.escape(plan.risk)} risk. Review it "
                "below.</p>")
        return (*await open_plan(plan.id), note, gr.update(visible=False, value=None, choices=[]))

    refresh = (tick, shown_rows, [table, count, shown_rows])
    table.select(on_row, None, review)
    linked.change(open_plan, linked, review)
    confirm.change(on_confirm, [selected, confirm], approve_btn)  # .input does not fire here (gradio 6.31)
    approve_btn.click(on_approve, [selected, comment, code, confirm], review).then(*refresh)
    reject_btn.click(on_reject, [selected, comment], review).then(*refresh)
    changes_btn.click(on_changes, [selected, comment], review).then(*refresh)
    ask_text.change(lambda: gr.update(visible=False, value=None), None, ask_choice)
    ask_btn.click(on_ask, [ask_text, ask_repo, ask_inventory, ask_limit, ask_tags, ask_choice],
                  [*review, ask_note, ask_choice]).then(*refresh)
    gr.Timer(rt.settings.console.refresh_s).tick(*refresh)

    async def load() -> tuple[Any, ...]:
        return (*await pending_now(), await repos())

    return PlansPage(loader=(load, [table, count, shown_rows, ask_repo]), follow=follow, selected=selected)
