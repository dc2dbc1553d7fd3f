"""Notifications: plan events (``chiffon:plan-events``, :mod:`chiffon.servers.ansible.plan_events`) sent to the
humans through Apprise (``notify.urls``).

One :class:`Notifier` runs wherever the incident correlator runs (``chiffon serve``, ``chiffon console``,
``chiffon worker``); those with ``notify.urls`` set read the stream in the consumer group ``notify``, so each event
is sent once however many run. The group is made by the first of them to start and holds the events from then on
(older ones are never sent). What is sent (``notify.events`` chooses which):

* ``pending_approval``: a plan waits for a decision. Title: playbook and risk; body: the request, the hosts, the
  risk reasons and the console link to the plan (``console.url``, :func:`plan_link`). A blocked plan (one that
  cannot be approved as-is) is not sent: whoever planned it was told why.
* ``high_risk_approved``: a high-risk plan was approved: who, through which channel.
* ``run_finished``: a run ended: its outcome (achieved, partial, failed, cancelled) and first reason.

Each URL is sent to separately, off the event loop (``asyncio.to_thread``), and a URL that fails is tried again
``notify.retries`` times (``notify.retry_delay_s``, doubling); then the failure is logged, counted
(``chiffon_notifications_total{result="failed"}``) and reported on the error bus, and the event is acked: a
receiver that is down never holds up plans, runs or the events after it. An event read and never acked (its
process died, or the store failed before it was sent) is taken over by a live notifier once it has been pending
:data:`RECLAIM_IDLE_S` (at least once; a duplicate only if a delivery outlasts that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tenacity import AsyncRetrying, RetryError, stop_after_attempt, wait_exponential
from tenacity import retry_if_exception_type as raised
from tenacity import retry_if_result as answered

from chiffon.servers.ansible import plans
from chiffon.servers.ansible.plan_events import PLAN_EVENTS
from chiffon.shared import metrics
from chiffon.shared.bus import Message
from chiffon.shared.config import NotifyEvent, Settings
from chiffon.shared.error_bus import report_error
from chiffon.shared.errors import PlanNotFound
from chiffon.shared.redact import redact_text
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

GROUP = "notify"
RECLAIM_IDLE_S = 600.0  # longer than the longest delivery: 11 tries with waits capped at 300 s would not fit, the
# default 4 tries (2 + 4 + 8 s of waits) do many times over
MAX_REQUEST_CHARS = 500
Send = Callable[[list[str], str, str], bool]


@dataclass(frozen=True)
class Notification:
    """What goes to every URL: ``event`` (a :data:`chiffon.shared.config.NotifyEvent`), a one-line ``title`` and a
    plain-text ``body``."""

    event: NotifyEvent
    plan_id: str
    title: str
    body: str


def console_base(settings: Settings, served: tuple[str, int] | None = None) -> str:
    """The console's public base URL, without a trailing slash: ``console.url``, else ``http(s)://BIND:PORT`` of
    ``served`` (the console this process serves: its bind address and port) or of ``console.bind``/``port``
    (https when ``http.tls_cert`` and ``tls_key`` are set; a wildcard bind such as ``0.0.0.0`` replaced by this
    host's name, an IPv6 address bracketed)."""
    if settings.console.url:
        return settings.console.url.rstrip("/")
    tls = settings.http.tls_cert is not None and settings.http.tls_key is not None
    host, port = served if served is not None and served[1] else (settings.console.bind, settings.console.port)
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def plan_link(settings: Settings, plan_id: str, served: tuple[str, int] | None = None, *,
              page: str = "plan") -> str:
    """The console link to ``plan_id``: ``<console base>/?<page>=<id>`` (the id URL-quoted; ``served``: see
    :func:`console_base`); ``page`` ``review`` opens the plan's review on the Plans page, ``plan`` its run
    (:mod:`chiffon.orchestrator.console.links`)."""
    return f"{console_base(settings, served)}/?{page}={quote(plan_id, safe='')}"


def _selected(plan: plans.Plan) -> str:
    return plan.playbook + (f" --tags {','.join(plan.tags)}" if plan.tags else "")


def _hosts(plan: plans.Plan) -> str:
    return _one_line(", ".join(plan.hosts) or plan.host_limit or "no hosts matched")


def _one_line(text: object, limit: int = MAX_REQUEST_CHARS) -> str:
    """``text`` on one line (line breaks and control characters become spaces, runs of spaces one), at most
    ``limit`` characters: what a request or a client-asserted name says can never forge a line of the body (a
    second "Review it:" link)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def compose(settings: Settings, event: dict[str, Any], plan: plans.Plan,
            served: tuple[str, int] | None = None) -> Notification | None:
    """The notification for one plan event (``{"kind", "plan_id", ...}``, see
    :mod:`chiffon.servers.ansible.plan_events`) about ``plan``, or None when the event is not one humans are told
    about: a blocked plan, a rejection, the approval of a plan that is not high-risk, an unknown kind. Secret
    values chiffon knows are masked (:func:`chiffon.shared.redact.redact_text`); ``served``: see
    :func:`console_base`."""
    kind, link = event.get("kind"), plan_link(settings, plan.id, served)
    reasons = _one_line("; ".join(plan.risk_reasons) or "none given", 2 * MAX_REQUEST_CHARS)
    note: tuple[NotifyEvent, str, list[str]] | None = None
    if kind == "pending_approval" and not event.get("blocked") and plan.blocked_reason is None:
        request = _one_line(plan.request or "(none: planned from a playbook)")
        note = ("pending_approval", f"chiffon: {_selected(plan)} awaits approval ({plan.risk} risk)",
                [f"Request: {request}", f"Hosts: {_hosts(plan)}", f"Risk: {plan.risk}: {reasons}",
                 f"Plan: {plan.id}", f"Review it: {plan_link(settings, plan.id, served, page='review')}"])
    elif kind == "decided" and event.get("decision") == "approved" and event.get("risk", plan.risk) == "high":
        approver, channel = _one_line(event.get("approver"), 200), _one_line(event.get("channel"), 200)
        note = ("high_risk_approved", f"chiffon: high-risk {_selected(plan)} approved by {approver}",
                [f"Approved by: {approver} via {channel}", f"Hosts: {_hosts(plan)}",
                 f"Risk: high: {reasons}", f"Plan: {plan.id}", f"Console: {link}"])
    elif kind == "run_finished":
        outcome = _one_line(event.get("outcome") or event.get("status") or "finished", 40)
        reason = _one_line(event.get("reason") or "no reason recorded")
        note = ("run_finished", f"chiffon: {_selected(plan)} {outcome}",
                [f"Outcome: {outcome}: {reason}", f"Hosts: {_hosts(plan)}", f"Plan: {plan.id}, run: "
                 f"{event.get('run_id')}", f"Console: {link}"])
    if note is None:
        return None
    name, title, lines = note
    return Notification(name, plan.id, redact_text(_one_line(title, 250)), redact_text("\n".join(lines)))


def apprise_send(urls: list[str], title: str, body: str) -> bool:
    """Send ``title`` and ``body`` to every Apprise URL in ``urls`` (blocking: call it in a thread); True when all
    took it. An URL Apprise cannot parse counts as a failure."""
    import apprise

    notifier = apprise.Apprise()
    if not all(notifier.add(url) for url in urls):
        return False
    return bool(notifier.notify(title=title, body=body))


class Notifier:
    """Consumer group ``notify`` on ``chiffon:plan-events``: each event composed (:func:`compose`) and sent.

    ``send``: the delivery seam, ``(urls, title, body) -> bool``, called in a thread (default
    :func:`apprise_send`); ``group``: the consumer group (tests give their own); ``served``: the console this
    process serves, ``(bind, port)``, for the links (:func:`console_base`)."""

    def __init__(self, rt: Runtime, *, name: str = "notifier", group: str = GROUP, send: Send | None = None,
                 served: tuple[str, int] | None = None, reclaim_idle_s: float = RECLAIM_IDLE_S) -> None:
        self.rt = rt
        self.served = served
        self.reclaim_idle_s = reclaim_idle_s
        self.name = name
        self.group = group
        self.settings = rt.settings.notify
        self._send = send or apprise_send

    async def run_forever(self) -> None:
        """Send events as they come; until cancelled. A store or bus restarting pauses it for a second. Without
        ``notify.urls`` it reads nothing (a process that cannot send leaves the events to one that can)."""
        if not self.settings.urls:
            log.debug("notify.urls is empty: this process sends no notifications")
            return
        await self.rt.bus.ensure_group(PLAN_EVENTS, self.group, start="$")
        loop = asyncio.get_running_loop()
        reclaimed = float("-inf")  # at once: what a notifier that died before this start left
        while True:
            try:
                if loop.time() - reclaimed >= self.reclaim_idle_s / 4:
                    reclaimed = loop.time()
                    await self.reclaim()
                for msg in await self.rt.bus.read_group(PLAN_EVENTS, self.group, self.name, count=50, block_ms=500):
                    await self.handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notifications paused: %s", exc)
                await asyncio.sleep(1.0)

    async def catch_up(self) -> int:
        """Handle every event waiting for the group now, without blocking; the number handled."""
        await self.rt.bus.ensure_group(PLAN_EVENTS, self.group, start="$")
        handled = 0
        while messages := await self.rt.bus.read_group(PLAN_EVENTS, self.group, self.name, count=100, block_ms=None):
            for msg in messages:
                await self.handle(msg)
            handled += len(messages)
        return handled

    async def reclaim(self) -> int:
        """Take over and handle the group's events pending longer than ``reclaim_idle_s``; the number handled."""
        claimed = await self.rt.bus.claim_idle(PLAN_EVENTS, self.group, self.name,
                                               idle_ms=int(self.reclaim_idle_s * 1000))
        for msg in claimed:
            log.info("plan event %s was read and never acked (its notifier died?); sending it now", msg.id)
            await self.handle(msg)
        return len(claimed)

    async def handle(self, msg: Message) -> Notification | None:
        """Compose and send one event, then ack it; the notification sent (or tried), None when there was
        nothing to send (no URLs, an event humans are not told about, or one left out of ``notify.events``)."""
        note = None
        if self.settings.urls:
            try:
                plan = await plans.get_plan(self.rt, str(msg.data.get("plan_id")))
            except PlanNotFound:
                log.warning("plan event %s names no stored plan (%s); nothing sent", msg.id, msg.data.get("plan_id"))
                plan = None
            note = compose(self.rt.settings, msg.data, plan, self.served) if plan is not None else None
        if note is not None and note.event not in self.settings.events:
            metrics.NOTIFICATIONS.labels(note.event, "skipped").inc()
            note = None
        if note is not None:
            await self.deliver(note)
        await self.rt.bus.ack(PLAN_EVENTS, self.group, msg.id)
        return note

    async def deliver(self, note: Notification) -> bool:
        """Send ``note`` to each URL of ``notify.urls`` (each tried ``1 + notify.retries`` times); True when every
        URL took it. A failure is logged with the URL's scheme only (an URL may hold a token), counted and reported
        on the error bus (``notify``/``delivery_failed``, a warning); never raised."""
        failed = []
        for secret in self.settings.urls:
            url = secret.get_secret_value()
            retrying = AsyncRetrying(
                stop=stop_after_attempt(1 + self.settings.retries), reraise=True,
                retry=answered(lambda ok: not ok) | raised(Exception),
                wait=wait_exponential(multiplier=self.settings.retry_delay_s, max=300))
            try:
                sent: bool = await retrying(asyncio.to_thread, self._send, [url], note.title, note.body)
            except RetryError:
                sent = False
            except Exception as exc:  # a plugin raising instead of answering False; its message may quote the URL
                log.warning("notification %s of %s: %s raised %s: %s", note.event, note.plan_id, _scheme(url),
                            type(exc).__name__, str(exc).replace(url, _scheme(url) + "..."))
                sent = False
            if not sent:
                failed.append(_scheme(url))
        if failed:
            metrics.NOTIFICATIONS.labels(note.event, "failed").inc()
            log.warning("notification %s of plan %s not delivered to %s after %d tries (notify.urls); the plan is "
                        "unaffected", note.event, note.plan_id, ", ".join(failed), 1 + self.settings.retries)
            report_error("notify", "delivery_failed", f"{note.event} of {note.plan_id} not delivered to "
                         f"{', '.join(failed)}", "warning", {"plan": note.plan_id})
            return False
        metrics.NOTIFICATIONS.labels(note.event, "sent").inc()
        log.info("notification %s of plan %s sent to %d URL(s)", note.event, note.plan_id, len(self.settings.urls))
        return True


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] + "://" if "://" in url else "an unparsable URL"


@contextlib.asynccontextmanager
async def running_notifier(rt: Runtime, served: tuple[str, int] | None = None) -> AsyncIterator[Notifier]:
    """A :class:`Notifier` in the background for the life of the block (named ``HOST-PID`` in the group);
    ``served``: the console this process serves, ``(bind, port)`` (its links point there unless ``console.url``
    says otherwise)."""
    notifier = Notifier(rt, name=f"{socket.gethostname()}-{os.getpid()}", served=served)
    task = asyncio.create_task(notifier.run_forever())
    try:
        yield notifier
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
