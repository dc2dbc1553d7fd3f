"""The router against real llama.cpp servers (tiny GGUF models) and the Ollama/Anthropic wire fakes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from chiffon.servers.llm.backends.base import status_error
from chiffon.servers.llm.router import Router
from chiffon.servers.llm.types import Hints, build_messages
from chiffon.shared.config import LLMSettings
from chiffon.shared.errors import ContextOverflow, InvalidInput, MissingCredential, NoBackendAvailable
from chiffon.shared.runtime import Runtime
from tests.llm.conftest import LlamaServer, homelab_llm
from tests.llm.fakes import FakeState

HI = build_messages("What port does Redis use?", None)
HARD = build_messages("Compare Kuma versus Gatus, analyze the trade-offs and design a migration plan step by step; "
                      "why would one prefer either? Prove it.", None)


async def test_simple_request_streams_from_the_quick_llamacpp_server(router: Router) -> None:
    seen: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        seen.append((done, total, message))

    # Greedy decoding makes the random-weight model's output fixed: this prompt yields tokens, not EOS.
    result = await router.chat(HI, max_tokens=24, temperature=0.0, on_progress=progress)
    assert result.answered_by.tier == "quick" and result.answered_by.model == "tiny-quick"
    assert result.route.backend == "desktop-llamacpp"
    assert result.finish_reason in ("length", "stop")
    assert result.ttft_ms is not None and result.ttft_ms <= result.latency_ms
    assert result.cost_usd == 0 and result.tokens_out > 0
    assert seen and seen[0][1] == 24 and "quick (tiny-quick)" in seen[0][2]


async def test_complex_request_goes_to_claude_and_is_priced(router: Router, anthropic_fake: tuple[FakeState, str]) -> None:
    result = await router.chat(HARD, max_tokens=100)
    assert result.answered_by.tier == "external"
    assert result.text == "Claude here: the answer is 42"
    assert result.tokens_out == 6
    assert result.cost_usd == pytest.approx((result.tokens_in * 3 + 6 * 15) / 1e6, abs=1e-6)
    assert anthropic_fake[0].requests[-1]["model"] == "claude-sonnet-4-6"


async def test_local_only_keeps_complex_work_at_home(router: Router, ollama_fake: tuple[FakeState, str]) -> None:
    result = await router.chat(HARD, Hints(local_only=True), max_tokens=50)
    assert result.answered_by.tier == "local-large"
    assert result.text.startswith("fine, Compare Kuma")
    assert any("local_only" in n for n in result.notes)


async def test_budget_exhaustion_routes_local_with_a_note(llm_settings: LLMSettings, rt: Runtime,
                                                          anthropic_fake: tuple[FakeState, str]) -> None:
    anthropic_fake[0].reply = lambda msgs: " ".join(["word"] * 30)  # 30 tokens out: $0.00045 at $15/MTok
    probe = await Router.open(llm_settings, store=rt.store)
    spent = probe.ledger.external_spent_usd  # type: ignore[union-attr]
    await probe.aclose()
    router = await Router.open(llm_settings.model_copy(update={"monthly_budget_usd": spent + 0.0007}), store=rt.store)
    try:
        first = await router.chat(build_messages("Explain this.", None), Hints(high_value=True), max_tokens=40)
        assert first.answered_by.tier == "external" and first.cost_usd > 0
        second = await router.chat(build_messages("Explain this.", None), Hints(high_value=True), max_tokens=40)
        assert second.answered_by.tier == "local-large"
        assert any("budget is exhausted" in n for n in second.notes)
        assert (await router.models()).external_budget_left_usd < second.route.estimated_cost_usd + 0.0007
    finally:
        anthropic_fake[0].reply = lambda msgs: "Claude here: the answer is 42"
        await router.aclose()


async def test_breaker_opens_when_a_server_dies_and_closes_after_restart(
    gguf_models: tuple, llm_settings: LLMSettings, rt: Runtime
) -> None:
    own = LlamaServer(gguf_models[0], "tiny-quick").start()
    backends = {**llm_settings.backends, "desktop-llamacpp": llm_settings.backends["desktop-llamacpp"].model_copy(
        update={"url": own.url})}
    router = await Router.open(llm_settings.model_copy(update={"backends": backends}), store=rt.store)
    try:
        assert (await router.chat(HI, max_tokens=4)).answered_by.tier == "quick"
        own.stop()
        for _ in range(2):  # breaker_failures = 2
            result = await router.chat(HI, max_tokens=4)
            assert result.answered_by.tier == "local"
            assert any("quick" in n and "fell back" in n for n in result.notes)
        assert router.breakers["desktop-llamacpp"].state == "open"
        report = {t.tier: t for t in (await router.models()).tiers}
        assert report["quick"].breaker == "open" and not report["quick"].available and not report["quick"].healthy
        route = await router.route(HI, Hints(), 4)
        assert route.tier == "local" and any("circuit open" in n for n in route.notes)
        own.start()
        await asyncio.sleep(llm_settings.breaker_cooldown_s)
        assert (await router.chat(HI, max_tokens=4)).answered_by.tier == "quick"  # the half-open probe
        assert router.breakers["desktop-llamacpp"].state == "closed"
    finally:
        own.stop()
        await router.aclose()


async def test_saturated_backend_serves_interactive_first(router: Router, ollama_fake: tuple[FakeState, str]) -> None:
    state = ollama_fake[0]
    state.delay_s = 0.05
    state.reply = lambda msgs: msgs[-1]["content"] + " done"
    positions: dict[str, list[str]] = {}

    def ask(name: str, priority: str) -> asyncio.Task:
        async def progress(done: float, total: float | None, message: str) -> None:
            positions.setdefault(name, []).append(message)
        return asyncio.create_task(router.chat(build_messages(name, None), Hints(tier="local-large", priority=priority),  # type: ignore[arg-type]
                                               max_tokens=10, on_progress=progress))

    try:
        tasks = [ask("first", "background")]
        await asyncio.sleep(0.02)
        tasks += [ask("bg-a", "background"), ask("bg-b", "background")]
        await asyncio.sleep(0.02)
        tasks.append(ask("urgent", "interactive"))
        await asyncio.gather(*tasks)
    finally:
        state.reply = FakeState().reply
    served = [r["messages"][-1]["content"] for r in state.requests]
    assert served == ["first", "urgent", "bg-a", "bg-b"]
    assert any("position 1 in its queue" in m for m in positions["urgent"])
    assert any("position 2" in m for m in positions["bg-b"])


@pytest.mark.parametrize("mode", ["garbage", "cut", "error"])
async def test_broken_backend_gives_the_fallbacks_answer(router: Router, ollama_fake: tuple[FakeState, str],
                                                         mode: str) -> None:
    ollama_fake[0].mode = mode
    result = await router.chat(HI, Hints(tier="local-large"), max_tokens=8)
    assert result.answered_by.tier == "local"  # local-large -> local by default
    assert any("local-large" in n for n in result.notes)
    assert "fine," not in result.text  # nothing of the broken stream leaks into the answer


async def test_broken_stream_without_fallback_is_a_clear_error(llm_settings: LLMSettings, rt: Runtime,
                                                                ollama_fake: tuple[FakeState, str]) -> None:
    settings = llm_settings.model_copy(update={"tiers": {"local-large": llm_settings.tiers["local-large"]}})
    router = await Router.open(settings, store=rt.store)
    ollama_fake[0].mode = "cut"
    try:
        with pytest.raises(NoBackendAvailable, match="local-large: ai-ollama: stream ended before done"):
            await router.chat(HI, max_tokens=8)
    finally:
        await router.aclose()


async def test_overflowing_prompt_falls_back_to_a_larger_context(router: Router) -> None:
    # Byte-level tokens: ~1 token per character, so 1200 characters overflow the 512-token servers while
    # the 4-characters-a-token estimate (300) lets the policy try them.
    long = build_messages("ab " * 400, None)
    result = await router.chat(long, Hints(tier="quick"), max_tokens=16)
    assert result.answered_by.tier == "local-large"
    assert any("quick" in n for n in result.notes)


def test_overflow_errors_are_recognised() -> None:
    err = status_error("desktop", 400, '{"error":{"message":"This model\'s maximum context length is 512 tokens"}}')
    assert isinstance(err, ContextOverflow) and not err.transient
    assert status_error("claude", 529, "Overloaded").transient
    assert not status_error("claude", 401, "invalid x-api-key").transient


async def test_missing_anthropic_key(llm_settings: LLMSettings, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    router = await Router.open(llm_settings, store=rt.store)
    try:
        with pytest.raises(MissingCredential, match="ANTHROPIC_API_KEY"):
            await router.chat(HI, Hints(tier="external"), max_tokens=8)
        external = {t.tier: t for t in (await router.models()).tiers}["external"]
        assert not external.available and "ANTHROPIC_API_KEY" in (external.why_unavailable or "")
        result = await router.chat(HARD, Hints(high_value=True), max_tokens=8)
        assert result.answered_by.tier == "local-large" and any("ANTHROPIC_API_KEY" in n for n in result.notes)
    finally:
        await router.aclose()


async def test_busy_host_heartbeat_is_skipped(router: Router, rt: Runtime) -> None:
    await rt.bus.redis.set("chiffon:host:desktop", '{"status": "busy"}', ex=30)
    try:
        router.hosts._cache.clear()
        decision = await router.route(HI, Hints(), 8)
        assert decision.tier == "local" and any("host desktop is busy" in n for n in decision.notes)
    finally:
        await rt.bus.redis.delete("chiffon:host:desktop")


async def test_bad_input_changes_nothing(router: Router, ollama_fake: tuple[FakeState, str]) -> None:
    with pytest.raises(InvalidInput, match="max_tokens"):
        await router.chat(HI, max_tokens=0)
    with pytest.raises(InvalidInput, match="max_tokens"):
        await router.chat(HI, max_tokens=500_000)
    with pytest.raises(InvalidInput, match="unknown tier"):
        await router.chat(HI, Hints(tier="gigantic"))
    with pytest.raises(InvalidInput, match="unknown model"):
        await router.chat(HI, Hints(model="gpt-5"))
    with pytest.raises(InvalidInput, match="max_cost_usd"):
        await router.chat(HI, Hints(max_cost_usd=-0.01))
    with pytest.raises(InvalidInput, match="temperature"):
        await router.chat(HI, temperature=5)
    assert ollama_fake[0].requests == []


async def test_embeddings_and_usage_ledger(router: Router) -> None:
    result = await router.embed(["deploy kuma", "backup postgres"])
    assert result.model == "nomic-embed-text" and result.dimensions == 3 and len(result.vectors) == 2
    with pytest.raises(InvalidInput, match="texts"):
        await router.embed([])
    with pytest.raises(InvalidInput, match=r"texts\[1\]"):
        await router.embed(["ok", " "])
    await router.chat(HI, Hints(caller="qa-agent", tier="local-large"), max_tokens=4)
    rows = await router.usage(datetime.now(UTC) - timedelta(hours=1), "caller")
    qa = next(r for r in rows if r["caller"] == "qa-agent")
    assert qa["requests"] >= 1 and qa["tokens_out"] > 0 and qa["p50_latency_ms"] > 0
    with pytest.raises(InvalidInput, match="group_by"):
        await router.usage(None, "color")


def test_homelab_llm_helper_validates() -> None:
    with pytest.raises(ValueError):
        homelab_llm("http://a", "http://b", "http://c", "http://d", tiers={"quick": {"backend": "nope", "model": "m"}})


async def test_in_process_llama_cpp_backend(gguf_models: tuple) -> None:
    settings = LLMSettings.model_validate({
        "backends": {"gpu": {"kind": "llamacpp-inprocess", "model_path": str(gguf_models[0]), "n_ctx": 256,
                             "n_threads": 1}},
        "tiers": {"quick": {"backend": "gpu", "model": "tiny-quick", "context_window": 256}},
        "retries": 0,
    })
    router = await Router.open(settings)
    try:
        health = (await router.models()).tiers[0]
        assert health.healthy and "loads on first use" in health.health
        result = await router.chat(HI, max_tokens=8, temperature=0.0)
        assert result.answered_by.backend == "gpu" and result.finish_reason in ("length", "stop")
        # 360 characters: ~90 tokens by the estimate, ~360 byte tokens for real, > n_ctx 256.
        with pytest.raises(NoBackendAvailable, match="context window"):
            await router.chat(build_messages("ab " * 120, None), max_tokens=8)
    finally:
        await router.aclose()
