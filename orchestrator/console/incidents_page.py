"""The console's Incidents page: what the error bus correlated (:mod:`chiffon.orchestrator.incidents`), open
and resolved, and one incident with its events and a link to its plan's run."""

from __future__ import annotations

import logging
import os
import socket
from html import escape
from typing import Any

import gradio as gr

from chiffon.orchestrator import incidents
from chiffon.orchestrator.console import actions
from chiffon.orchestrator.console.actions import Loader
from chiffon.orchestrator.console.records_html import INCIDENT_HEADERS, incident_cells, incident_html
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)
STATUSES = ["open and resolved", "open", "resolved"]
PICK = "<p>Pick an incident: its events show here.</p>"


async def incident_rows(rt: Runtime, status: str = "", severity: str = "") -> list[list[str]]:
    """The newest 200 incidents (``status`` open or resolved, at least ``severity``; empty: any) as table rows
    (``records_html.INCIDENT_HEADERS``), after correlating the events waiting on the bus (as ``chiffon errors``
    does, so the page is current where no correlator runs; a bus that cannot be read is logged and skipped).

    Raises InvalidInput for a bad status or severity.
    """
    try:
        await incidents.Correlator(rt, name=f"console-{socket.gethostname()}-{os.getpid()}").catch_up()
    except Exception as exc:  # Redis restarting: show what the store has
        log.warning("incidents: the error bus could not be read (%s); showing the stored incidents", exc)
    found = await incidents.incidents(rt, status=status or None, severity=severity or None, limit=200)
    return [incident_cells(i) for i in found]


def incidents_page(svc: AnsibleService, links: dict[str, Any] | None = None) -> Loader:
    """Build the Incidents tab: open and resolved incidents (its loader), filtered by status and severity; one
    picked in the table shows its events and a link to its plan. ``links["incident"]`` gets the box that
    ``?incident=ID`` fills (:mod:`.links`)."""
    rt = svc.rt
    with gr.Row():
        status = gr.Dropdown(label="Status", choices=STATUSES, value=STATUSES[0], elem_id="incidents-status")
        severity = gr.Dropdown(label="At least", choices=["", "info", "warning", "error", "critical"], value="",
                               elem_id="incidents-severity")
        reload_incidents = gr.Button("Refresh", elem_id="incidents-refresh")
    note = gr.Markdown(elem_id="incidents-note")
    table = gr.Dataframe(headers=INCIDENT_HEADERS, interactive=False, wrap=True, elem_id="incidents-table")
    picked = gr.Textbox(visible=False)
    view = gr.HTML(PICK, elem_id="incident-view")

    async def listing(which: str, worst: str) -> tuple[Any, str]:
        try:
            rows = await incident_rows(rt, "" if which == STATUSES[0] else which, worst)
        except ChiffonError as exc:
            return gr.skip(), f"**Refused:** {actions.md(exc)}"
        opened = sum(1 for r in rows if r[1] == "open")
        return rows, f"{len(rows)} incident(s), {opened} open"

    async def listing_all() -> tuple[Any, str]:
        return await listing(STATUSES[0], "")

    async def pick(event: gr.SelectData) -> Any:
        row = event.row_value or []
        return str(row[0]) if row else gr.skip()

    async def show(incident_id: str) -> str:
        if not incident_id:
            return PICK
        try:
            return incident_html(await incidents.incident(rt, incident_id.strip()))
        except ChiffonError as exc:
            return f"<p><b>Refused:</b> {escape(str(exc))}</p>"

    for trigger in (reload_incidents.click, status.input, severity.input):
        trigger(listing, [status, severity], [table, note])
    table.select(pick, None, picked)
    picked.change(show, picked, view)
    if links is not None:
        links["incident"] = picked
    return listing_all, [table, note]
