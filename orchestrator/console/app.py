"""The console's pages (Gradio) and its web server, over :mod:`.actions`.

Pages: Plans (review, Approve, Reject, Request changes), Runs (live status and execution log; Undo plans putting
back what a run changed), Drift (the newest
drift report, read-only), Audit (filters,
each record's commit), Hosts (state and figures from hostd, busy/free), Agents (tasks, step logs, inbox) and
Voice (push-to-talk: microphone, transcript, the router with the session's history, speech streamed back
sentence by sentence, per-stage timings). Every page sits behind the login (:mod:`.auth`); ``GET /health``
does not, and answers the health protocol from the store, the bus and hostd.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr
import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from chiffon.orchestrator.console import actions
from chiffon.orchestrator.console.auth import ConsoleLogin, LoginGuard
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError
from chiffon.shared.runtime import Runtime

AUDIT_HEADERS = ["time", "kind", "plan", "service", "status", "summary", "commit"]
HOST_HEADERS = ["host", "status", "reason", "CPU %", "RAM used/total MB", "VRAM used/total MB"]
TASK_HEADERS = ["task", "role", "status", "goal", "attempts", "created"]
INBOX_HEADERS = ["id", "task", "kind", "title", "at"]


_client_address: contextvars.ContextVar[str] = contextvars.ContextVar("console_client_address", default="unknown")


class _Client:
    """ASGI middleware: the request's client address (the TCP peer; behind a reverse proxy, the proxy's) in
    ``_client_address`` for the login check, which gradio calls with a name and a password only."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        token = _client_address.set(str(client[0]) if client else "unknown")
        try:
            await self.app(scope, receive, send)
        finally:
            _client_address.reset(token)


def _who(request: gr.Request | None) -> str:
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise gr.Error("not logged in")
    return str(name)


async def _said(work: Any) -> str:
    """Run ``work`` (a coroutine giving a message); a ChiffonError becomes its message, shown on the page."""
    try:
        return str(await work)
    except ChiffonError as exc:
        return f"**Refused:** {actions.md(exc)}"


def build(svc: AnsibleService, voice: Any = None) -> gr.Blocks:
    """The console's pages over ``svc`` (plans, runs, audit, hosts, agents) and ``voice`` (a VoiceService, or
    None: the Voice page says how to turn it on)."""
    rt: Runtime = svc.rt
    totp = rt.settings.approvals.totp_secret is not None
    every = rt.settings.console.refresh_s

    with gr.Blocks(title="chiffon console", analytics_enabled=False) as page:
        gr.Markdown("## chiffon console")
        with gr.Tabs():
            with gr.Tab("Plans", id="plans"):
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
                    return await _said(actions.approve(rt, plan_id, _who(request), reason=text, code=otp))

                async def on_reject(plan_id: str, text: str, request: gr.Request) -> str:
                    return await _said(actions.reject(rt, plan_id, _who(request), reason=text))

                async def on_changes(plan_id: str, text: str, request: gr.Request) -> str:
                    async def replan() -> str:
                        new = await actions.request_changes(svc, plan_id, _who(request), text)
                        return f"Rejected {plan_id} with your comment; the new plan is **{new.id}** (pending)."
                    return await _said(replan())

                async def show(plan_id: str | None) -> str:
                    return await _said(actions.show_plan(rt, plan_id))

                reload_plans.click(list_pending, None, pick)
                pick.change(show, pick, plan_md)
                approve_btn.click(on_approve, [pick, comment, code], outcome).then(list_pending, None, pick)
                reject_btn.click(on_reject, [pick, comment], outcome).then(list_pending, None, pick)
                changes_btn.click(on_changes, [pick, comment], outcome).then(list_pending, None, pick)

            with gr.Tab("Runs", id="runs"):
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
                    return await _said(actions.undo(svc, plan_id or ""))

                undo_btn.click(on_undo, run_pick, undo_md).then(list_pending, None, pick)
                gr.Timer(every).tick(follow, run_pick, [run_md, run_log])

            with gr.Tab("Drift", id="drift"):
                reload_drift = gr.Button("Refresh", elem_id="drift-refresh")
                drift_md = gr.Markdown("No drift report loaded.", elem_id="drift-view")

                async def drift_now() -> str:
                    return await _said(actions.drift_view(svc))

                reload_drift.click(drift_now, None, drift_md)

            with gr.Tab("Audit", id="audit"):
                with gr.Row():
                    failed = gr.Checkbox(label="Failed runs only", elem_id="audit-failed")
                    since = gr.Textbox(label="Since (7d, 12h, ISO date)", elem_id="audit-since")
                    service = gr.Textbox(label="Service", elem_id="audit-service")
                    plan_filter = gr.Textbox(label="Plan", elem_id="audit-plan")
                    search = gr.Button("Search", elem_id="audit-search")
                audit_note = gr.Markdown(elem_id="audit-note")
                table = gr.Dataframe(headers=AUDIT_HEADERS, interactive=False, wrap=True, elem_id="audit-table")
                commit_md = gr.Markdown("Pick a record: its commit shows here.", elem_id="audit-commit")

                async def query(only_failed: bool, when: str, svc_name: str, plan_id: str) -> tuple[Any, str]:
                    try:
                        rows = await actions.audit_rows(rt, failed=only_failed, since=when, service=svc_name,
                                                        plan_id=plan_id)
                    except ChiffonError as exc:
                        return gr.update(), f"**Refused:** {actions.md(exc)}"
                    return rows, f"{len(rows)} record(s)"

                async def show_commit(event: gr.SelectData) -> str:
                    row = event.row_value or []
                    return await actions.audit_commit(rt, str(row[-1]) if row else "")

                search.click(query, [failed, since, service, plan_filter], [table, audit_note])
                table.select(show_commit, None, commit_md)

            with gr.Tab("Hosts", id="hosts"):
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
                    return await _said(actions.mark_host(rt, host or "", True, _who(request), why))

                async def on_free(host: str, request: gr.Request) -> str:
                    return await _said(actions.mark_host(rt, host or "", False, _who(request)))

                busy_btn.click(on_busy, [host_pick, host_reason], host_note).then(hosts_now, None, hosts_table)
                free_btn.click(on_free, host_pick, host_note).then(hosts_now, None, hosts_table)
                gr.Timer(max(every, 2.0)).tick(hosts_now, None, hosts_table)

            with gr.Tab("Agents", id="agents"):
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

            with gr.Tab("Voice", id="voice"):
                if voice is None:
                    gr.Markdown("The voice assistant needs chiffon-hostd and an LLM tier; see the README's voice "
                                "section.")
                else:
                    _voice_page(voice)

        page.load(list_pending, None, pick).then(list_recent, None, run_pick).then(hosts_now, None, hosts_table) \
            .then(agents_now, None, [tasks_table, inbox_table]).then(drift_now, None, drift_md)
    return page


def _voice_page(voice: Any) -> None:
    """Push-to-talk: the microphone (or a file) → transcript → the router with this browser session's history →
    speech streamed back sentence by sentence, with per-stage timings."""
    mic = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speak, then send", elem_id="voice-in")
    send = gr.Button("Send", variant="primary", elem_id="voice-send")
    heard = gr.Textbox(label="You said", interactive=False, elem_id="voice-heard")
    reply = gr.Textbox(label="Reply", interactive=False, elem_id="voice-reply")
    # Gradio encodes a streamed reply with ffmpeg; without it the reply plays once it is whole.
    streaming = shutil.which("ffmpeg") is not None
    if not streaming:
        gr.Markdown("ffmpeg is not installed: the reply plays when it is whole, not sentence by sentence "
                    "(`apt-get install ffmpeg`).")
    spoken = gr.Audio(label="Spoken reply", streaming=streaming, autoplay=True, interactive=False,
                      type="filepath", elem_id="voice-out")
    timings = gr.JSON(label="Timings (s)", elem_id="voice-timings")
    session = gr.State(lambda: f"console-{secrets.token_hex(6)}")

    async def talk(path: str | None, session_id: str, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        _who(request)
        if not path:
            yield "", "Record or upload something first.", None, {}
            return
        chunks: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
        started = time.perf_counter()
        first: dict[str, float] = {}

        async def on_audio(pcm: bytes, rate: int) -> None:
            first.setdefault("first_audio_s", round(time.perf_counter() - started, 3))
            await chunks.put((pcm, rate))

        async def turn() -> Any:
            try:
                return await voice.converse(path, session_id, on_audio=on_audio)
            finally:
                await chunks.put(None)

        running = asyncio.create_task(turn())
        while (item := await chunks.get()) is not None:
            pcm, rate = item
            if streaming:
                yield gr.update(), gr.update(), (rate, np.frombuffer(pcm, dtype=np.int16)), gr.update()
        try:
            done = await running
        except ChiffonError as exc:
            yield "", f"Refused: {exc}", None, {}
            return
        whole = done.audio.path if done.audio is not None and not streaming else gr.update()
        yield done.transcript, done.reply, whole, {**done.timings.model_dump(), **first}

    send.click(talk, [mic, session], [heard, reply, spoken, timings])


def create_app(svc: AnsibleService, voice: Any = None) -> FastAPI:
    """The console as an ASGI app: ``/health`` (no login) and the pages at ``/`` behind the operators' login."""
    rt = svc.rt
    app = FastAPI(title="chiffon console", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> JSONResponse:
        from chiffon.shared.health import check_parts

        report = await check_parts(rt, hostd=voice is not None)
        return JSONResponse(report, status_code=200 if report["status"] in ("ok", "healthy", "degraded") else 503)

    gate = ConsoleLogin(rt.settings.console.operators, LoginGuard.from_settings(rt.settings.console), rt.audit)

    async def auth(name: str, password: str) -> bool:  # gradio passes no request: the address comes from _Client
        return await gate.login(name, password, _client_address.get())

    app.add_middleware(_Client)

    return gr.mount_gradio_app(app, build(svc, voice), path="", auth=auth, ssr_mode=False,
                               auth_message="chiffon console: log in as an operator (console.operators).",
                               allowed_paths=[str(rt.settings.home / "voice")])
