"""The console's web server: ``/health`` without a login, and the pages behind the operators' login (:mod:`.auth`).

The pages live one module per topic, each over :mod:`.actions` (no web code there): :mod:`.plans_page` (review,
Approve, Reject, Request changes), :mod:`.runs_page` (the runs table, a run followed live, Undo; the newest drift report),
:mod:`.incidents_page` (the error bus's incidents),
:mod:`.records_page` (Audit, Hosts, Agents) and :mod:`.voice_page` (push-to-talk). ``GET /health`` answers the
health protocol from the store, the bus and hostd.
"""

from __future__ import annotations

import contextvars
from typing import Any

import gradio as gr
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from chiffon.orchestrator.console.auth import ConsoleLogin, LoginGuard
from chiffon.orchestrator.console.incidents_page import incidents_page
from chiffon.orchestrator.console.links import deep_link
from chiffon.orchestrator.console.plans_page import plans_page
from chiffon.orchestrator.console.records_page import agents_page, audit_page, hosts_page
from chiffon.orchestrator.console.review import CSS as REVIEW_CSS
from chiffon.orchestrator.console.runs_page import drift_page, runs_page
from chiffon.orchestrator.console.voice_page import voice_page
from chiffon.servers.ansible.service import AnsibleService

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


def build(svc: AnsibleService, voice: Any = None) -> gr.Blocks:
    """The console's pages over ``svc`` (plans, runs, incidents, drift, audit, hosts, agents) and ``voice`` (a VoiceService,
    or None: the Voice page says how to turn it on)."""
    page = gr.Blocks(title="chiffon console", analytics_enabled=False)
    with page:  # (Blocks.__enter__ is typed as returning Any)
        gr.Markdown("## chiffon console")
        links: dict[str, Any] = {}  # what ?review=, ?plan=, ?audit=, ?incident= fill (.links)
        with gr.Tabs() as tabs:
            with gr.Tab("Plans", id="plans"):
                plans_ui = plans_page(svc, links=links)
                pending = plans_ui.loader
            with gr.Tab("Runs", id="runs"):
                runs = runs_page(svc, made_plan=pending, links=links)
            with gr.Tab("Incidents", id="incidents"):
                found = incidents_page(svc, links=links)
            with gr.Tab("Drift", id="drift"):
                drift = drift_page(svc)
            with gr.Tab("Audit", id="audit"):
                audit = audit_page(svc, links=links)
            with gr.Tab("Hosts", id="hosts"):
                hosts = hosts_page(svc)
            with gr.Tab("Agents", id="agents"):
                agents = agents_page(svc)
            with gr.Tab("Voice", id="voice"):
                voice_page(voice, svc.rt.settings)  # with voice None it says which part is missing
        # a link (?review=, ?plan=, ...) is followed right after what it lands on has loaded (Audit's loader would
        # overwrite a linked filter), before the slower pages
        link_fn, link_outputs = deep_link(tabs, links)
        loading = page.load(pending[0], None, pending[1]).then(audit[0], None, audit[1]) \
            .then(link_fn, None, link_outputs)
        for fn, outputs in (runs, found, hosts, agents, drift):
            loading = loading.then(fn, None, outputs)
        # an approval's "Follow the run": the Runs tab, with the plan's run picked
        plans_ui.follow.click(lambda: gr.Tabs(selected="runs"), None, tabs) \
            .then(lambda plan_id: plan_id, plans_ui.selected, links["plan"])
    return page


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

    mounted: FastAPI = gr.mount_gradio_app(
        app, build(svc, voice), path="", auth=auth, ssr_mode=False, css=REVIEW_CSS,
        auth_message="chiffon console: log in as an operator (console.operators).",
        allowed_paths=[str(rt.settings.home / "voice")])
    return mounted
