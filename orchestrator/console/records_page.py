"""The console's Audit, Hosts and Agents pages: records, machines and agent tasks, mostly read-only."""

from __future__ import annotations

from typing import Any

import gradio as gr

from chiffon.orchestrator.console import actions
from chiffon.orchestrator.console.actions import Loader, said
from chiffon.orchestrator.console.auth import who
from chiffon.orchestrator.console.records_html import audit_fields, audit_record
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError

AUDIT_HEADERS = ["time", "kind", "plan", "service", "status", "summary", "commit"]
HOST_HEADERS = ["host", "status", "reason", "CPU %", "RAM used/total MB", "VRAM used/total MB"]
TASK_HEADERS = ["task", "role", "status", "goal", "attempts", "created"]
INBOX_HEADERS = ["id", "task", "kind", "title", "at"]


def audit_page(svc: AnsibleService, links: dict[str, Any] | None = None) -> Loader:
    """Build the Audit tab: the newest records (its loader), filtered by failed runs, since, service and plan; a
    record picked in the table shows as fields (:func:`.records_html.audit_fields`). ``links["audit"]`` gets the
    hidden box that ``?audit=PLAN`` fills (:mod:`.links`): it filters the page to that plan."""
    rt = svc.rt
    with gr.Row():
        failed = gr.Checkbox(label="Failed runs only", elem_id="audit-failed")
        since = gr.Textbox(label="Since (7d, 12h, ISO date)", elem_id="audit-since")
        service = gr.Textbox(label="Service", elem_id="audit-service")
        plan_filter = gr.Textbox(label="Plan", elem_id="audit-plan")
        search = gr.Button("Search", elem_id="audit-search")
    audit_note = gr.Markdown(elem_id="audit-note")
    table = gr.Dataframe(headers=AUDIT_HEADERS, interactive=False, wrap=True, elem_id="audit-table")
    commit_md = gr.HTML(audit_fields(None), elem_id="audit-commit")
    linked = gr.Textbox(visible=False)

    async def query(only_failed: bool, when: str, svc_name: str, plan_id: str) -> tuple[Any, str]:
        try:
            rows = await actions.audit_rows(rt, failed=only_failed, since=when, service=svc_name,
                                            plan_id=plan_id)
        except ChiffonError as exc:
            return gr.update(), f"**Refused:** {actions.md(exc)}"
        return rows, f"{len(rows)} record(s)"

    async def show_commit(event: gr.SelectData) -> str:
        row = event.row_value or []
        return audit_fields(await audit_record(rt, str(row[-1]) if row else ""))

    async def link_to(plan_id: str) -> tuple[str, Any, str]:
        return plan_id, *await query(False, "", "", plan_id)

    async def query_all() -> tuple[Any, str]:
        return await query(False, "", "", "")

    search.click(query, [failed, since, service, plan_filter], [table, audit_note])
    table.select(show_commit, None, commit_md)
    linked.change(link_to, linked, [plan_filter, table, audit_note])
    if links is not None:
        links["audit"] = linked
    return query_all, [table, audit_note]


def hosts_page(svc: AnsibleService) -> Loader:
    """Build the Hosts tab: each host's state and figures from hostd, Mark busy / Mark free."""
    rt = svc.rt
    every = rt.settings.console.refresh_s
    hosts_table = gr.Dataframe(headers=HOST_HEADERS, interactive=False, elem_id="hosts-table")
    with gr.Row():
        host_pick = gr.Dropdown(label="Host", choices=sorted(rt.settings.hosts), elem_id="host-pick")
        host_reason = gr.Textbox(label="Why (for busy)", elem_id="host-reason")
        busy_btn = gr.Button("Mark busy", elem_id="host-busy")
        free_btn = gr.Button("Mark free", elem_id="host-free")
    host_note = gr.Markdown(elem_id="host-note")

    async def hosts_now() -> list[list[str]]:
        return await actions.host_rows(rt)

    async def on_busy(host: str, why: str, request: gr.Request) -> str:
        return await said(actions.mark_host(rt, host or "", True, who(request), why))

    async def on_free(host: str, request: gr.Request) -> str:
        return await said(actions.mark_host(rt, host or "", False, who(request)))

    busy_btn.click(on_busy, [host_pick, host_reason], host_note).then(hosts_now, None, hosts_table)
    free_btn.click(on_free, host_pick, host_note).then(hosts_now, None, hosts_table)
    gr.Timer(max(every, 2.0)).tick(hosts_now, None, hosts_table)
    return hosts_now, hosts_table


def agents_page(svc: AnsibleService) -> Loader:
    """Build the Agents tab: the newest agent tasks, a task's step log, the inbox of escalations."""
    rt = svc.rt
    reload_tasks = gr.Button("Refresh", elem_id="tasks-refresh")
    tasks_table = gr.Dataframe(headers=TASK_HEADERS, interactive=False, wrap=True, elem_id="tasks-table")
    steps = gr.Textbox(label="Step log", lines=12, interactive=False, elem_id="task-steps")
    gr.Markdown("**Inbox** (escalations waiting for a human)")
    inbox_table = gr.Dataframe(headers=INBOX_HEADERS, interactive=False, elem_id="inbox-table")

    async def agents_now() -> tuple[list[list[str]], list[list[str]]]:
        return await actions.task_rows(rt), await actions.inbox_rows(rt)

    async def show_steps(event: gr.SelectData) -> str:
        row = event.row_value or []
        try:
            return await actions.task_steps(rt, str(row[0]) if row else "")
        except ChiffonError as exc:
            return str(exc)

    reload_tasks.click(agents_now, None, [tasks_table, inbox_table])
    tasks_table.select(show_steps, None, steps)
    return agents_now, [tasks_table, inbox_table]
