"""The console's Runs and Drift pages: the runs table with its filters and search, a run followed live with its
outcome at the top and its coloured log, Undo, and the newest drift report.

The table comes from :mod:`.history` (parameterised SQL), the run from :func:`.history.follow`, the HTML from
:mod:`.run_html`. A timer every ``console.refresh_s`` follows the picked run: it reads only the new task events,
and nothing at all once the run has ended; when the run's state changes, the table is read again, so no row or
label keeps saying ``running`` after the run ended.
"""

from __future__ import annotations

from html import escape
from typing import Any

import gradio as gr

from chiffon.orchestrator.console import actions, history, run_html
from chiffon.orchestrator.console.actions import Loader, said
from chiffon.orchestrator.console.records_html import audit_fields, audit_record
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError

NO_RUN = "<p>No run selected: pick one in the table or the list.</p>"


def runs_page(svc: AnsibleService, made_plan: Loader, links: dict[str, Any] | None = None) -> Loader:
    """Build the Runs tab's contents (inside ``gr.Tab``); ``made_plan`` runs after Undo makes a plan. Returns the
    loader of the runs table; puts the run picker in ``links["plan"]`` (``?plan=ID`` opens that run, :mod:`.links`)."""
    rt = svc.rt
    every = rt.settings.console.refresh_s
    with gr.Row():
        repo = gr.Textbox(label="Repo", elem_id="runs-repo", scale=2)
        playbook = gr.Textbox(label="Playbook", elem_id="runs-playbook", scale=2)
        host = gr.Dropdown(label="Host", choices=["", *sorted(rt.settings.hosts)], value="", elem_id="runs-host",
                           allow_custom_value=True, scale=1)
        outcome = gr.Dropdown(label="Outcome", choices=["", *history.STATES], value="", elem_id="runs-outcome",
                              scale=1)
        approver = gr.Textbox(label="Approver", elem_id="runs-approver", scale=2)
        since = gr.Textbox(label="Since (7d, ISO date)", elem_id="runs-since", scale=1)
        until = gr.Textbox(label="Until (ISO date)", elem_id="runs-until", scale=1)
    with gr.Row():
        search = gr.Textbox(label="Search requests", placeholder="words of the request, e.g. uptime kuma",
                            elem_id="runs-search", scale=5)
        find = gr.Button("Search", elem_id="runs-find", scale=1)
        reload_runs = gr.Button("Refresh", elem_id="runs-refresh", scale=1)
    note = gr.Markdown(elem_id="runs-note")
    table = gr.Dataframe(headers=history.HEADERS, interactive=False, wrap=True, elem_id="runs-table")
    run_pick = gr.Dropdown(label="Run of plan", choices=[], interactive=True, allow_custom_value=True,
                           elem_id="run-pick")
    run_view = gr.HTML(NO_RUN, elem_id="run-view")
    run_log = gr.HTML(elem_id="run-log")
    with gr.Row():
        undo_btn = gr.Button("Undo this run", elem_id="undo-run", size="sm", scale=0)  # plans it; approved on Plans
    undo_md = gr.Markdown(elem_id="undo-outcome")
    followed = gr.State(None)
    shown = gr.State([])  # the plan ids in the picker, so a refresh that finds the same rows leaves it alone
    filters = [repo, playbook, host, outcome, approver, since, until, search]

    async def list_runs(*values: Any) -> tuple[Any, Any, str, list[str]]:
        try:
            rows = await history.run_rows(rt, history.RunFilter(**dict(zip(_FIELDS, (v or "" for v in values),
                                                                           strict=True))))
        except ChiffonError as exc:
            return gr.skip(), gr.skip(), f"**Refused:** {actions.md(exc)}", gr.skip()
        ids = [r.plan_id for r in rows]
        return ([r.cells() for r in rows], gr.update(choices=history.choices(rows)),
                f"{len(rows)} run(s)" + (" (the newest 100)" if len(rows) == 100 else ""), ids)

    async def list_all() -> tuple[Any, Any, str, list[str]]:
        return await list_runs(*[""] * len(filters))

    async def tick_table(*values: Any) -> tuple[Any, Any, Any, Any]:
        *given, before = values
        rows, picks, text, ids = await list_runs(*given)
        return rows, (picks if ids != before else gr.skip()), text, ids

    async def show(plan_id: str | None, last: history.Followed | None) -> tuple[Any, Any, Any]:
        if not plan_id:
            return NO_RUN, "", None
        try:
            now = await history.follow(rt, plan_id.strip(), last)
        except ChiffonError as exc:
            return f"<p><b>Refused:</b> {escape(str(exc))}</p>", "", None
        if now is last:  # ended, nothing read
            return gr.skip(), gr.skip(), last
        sha = (now.run or {}).get("audit_commit")
        record = audit_fields(await audit_record(rt, sha)) if sha and now.done else ""
        return run_html.head_html(now, record), run_html.log_html(now), now

    async def follow(plan_id: str | None, last: history.Followed | None, *values: Any) -> tuple[Any, ...]:
        if not plan_id or (last is not None and last.plan.id == plan_id and last.done):
            return gr.skip(), gr.skip(), last, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        head, log, now = await show(plan_id, last)
        if now is not None and last is not None and now.state != last.state:  # the table reads the new state
            return head, log, now, *await list_runs(*values)
        return head, log, now, gr.skip(), gr.skip(), gr.skip(), gr.skip()

    async def show_new(plan_id: str | None) -> tuple[Any, Any, Any]:
        return await show(plan_id, None)

    async def pick(event: gr.SelectData) -> Any:
        row = event.row_value or []
        return str(row[0]) if row else gr.skip()

    listed = [table, run_pick, note, shown]
    for trigger in (find.click, reload_runs.click, search.submit, repo.submit, playbook.submit, approver.submit,
                    since.submit, until.submit, host.input, outcome.input):
        trigger(list_runs, filters, listed)
    table.select(pick, None, run_pick)
    run_pick.change(show_new, run_pick, [run_view, run_log, followed])
    gr.Timer(every).tick(follow, [run_pick, followed, *filters], [run_view, run_log, followed, *listed])
    gr.Timer(max(every * 4, 5.0)).tick(tick_table, [*filters, shown], listed)

    async def on_undo(plan_id: str | None) -> str:
        return await said(actions.undo(svc, plan_id or ""))

    undo_btn.click(on_undo, run_pick, undo_md).then(made_plan[0], None, made_plan[1])
    if links is not None:
        links["plan"] = run_pick
    return list_all, listed


_FIELDS = ("repo", "playbook", "host", "outcome", "approver", "since", "until", "search")


def drift_page(svc: AnsibleService) -> Loader:
    """Build the Drift tab's contents: the newest drift report of the console's repo, read-only."""
    reload_drift = gr.Button("Refresh", elem_id="drift-refresh")
    drift_md = gr.Markdown("No drift report loaded.", elem_id="drift-view")

    async def drift_now() -> str:
        return await said(actions.drift_view(svc))

    reload_drift.click(drift_now, None, drift_md)
    return drift_now, drift_md
