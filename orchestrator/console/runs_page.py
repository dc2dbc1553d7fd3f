"""The console's Runs and Drift pages: a plan's run followed live, Undo, and the newest drift report."""

from __future__ import annotations

from typing import Any

import gradio as gr

from chiffon.orchestrator.console import actions
from chiffon.orchestrator.console.actions import Loader, said
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError


def runs_page(svc: AnsibleService, made_plan: Loader) -> Loader:
    """Build the Runs tab's contents (inside ``gr.Tab``); ``made_plan`` runs after Undo makes a plan. Returns the
    loader of the runs list."""
    rt = svc.rt
    every = rt.settings.console.refresh_s
    with gr.Row():
        run_pick = gr.Dropdown(label="Plan", choices=[], interactive=True, scale=4, elem_id="run-pick")
        reload_runs = gr.Button("Refresh", scale=1, elem_id="runs-refresh")
    run_md = gr.Markdown("No plan selected.", elem_id="run-view")
    with gr.Row():
        undo_btn = gr.Button("Undo this run", elem_id="undo-run")  # plans it; approved on Plans
    undo_md = gr.Markdown(elem_id="undo-outcome")
    run_log = gr.Textbox(label="Execution log", lines=16, max_lines=40, interactive=False,
                         elem_id="run-log")

    async def list_recent() -> Any:
        return gr.update(choices=await actions.recent(rt))

    async def follow(plan_id: str | None) -> tuple[str, str]:
        try:
            return await actions.run_view(rt, plan_id)
        except ChiffonError as exc:
            return f"**Refused:** {actions.md(exc)}", ""

    reload_runs.click(list_recent, None, run_pick)
    run_pick.change(follow, run_pick, [run_md, run_log])

    async def on_undo(plan_id: str | None) -> str:
        return await said(actions.undo(svc, plan_id or ""))

    undo_btn.click(on_undo, run_pick, undo_md).then(made_plan[0], None, made_plan[1])
    gr.Timer(every).tick(follow, run_pick, [run_md, run_log])
    return list_recent, run_pick


def drift_page(svc: AnsibleService) -> Loader:
    """Build the Drift tab's contents: the newest drift report of the console's repo, read-only."""
    reload_drift = gr.Button("Refresh", elem_id="drift-refresh")
    drift_md = gr.Markdown("No drift report loaded.", elem_id="drift-view")

    async def drift_now() -> str:
        return await said(actions.drift_view(svc))

    reload_drift.click(drift_now, None, drift_md)
    return drift_now, drift_md
