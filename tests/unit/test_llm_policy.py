"""Routing policy, classifier, circuit breaker, priority queue and input validation (no servers)."""

from __future__ import annotations

import asyncio

import pytest

from chiffon.servers.llm import classifier
from chiffon.servers.llm.breaker import CircuitBreaker
from chiffon.servers.llm.gate import PriorityGate, QueueFull
from chiffon.servers.llm.policy import TierState, decide, nearest_configured
from chiffon.servers.llm.types import Hints, build_messages
from chiffon.shared.config import LLMPrice, load_settings
from chiffon.shared.errors import ConfigError, InvalidInput, MissingCredential, NoBackendAvailable

SONNET = LLMPrice(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)
SIMPLE = "What port does Redis use?"
MODERATE = "Why does my Redis container restart? Debug the compose file."
HARD = ("Compare Uptime Kuma versus Gatus for the homelab and analyze the trade-offs, then design a migration "
        "plan step by step:\n1. inventory\n2. config\n3. rollout\n```yaml\nservices:\n  kuma:\n    image: x\n```")


def tiers(**changes: dict[str, object]) -> dict[str, TierState]:
    base = {
        "quick": TierState("quick", "desktop", "qwen2.5-1.5b", 4096, []),
        "local": TierState("local", "ai-ollama", "qwen2.5:3b", 8192, []),
        "local-large": TierState("local-large", "ai-ollama", "qwen2.5:7b", 8192, []),
        "external": TierState("external", "anthropic", "claude-sonnet-4-6", 200_000, [], price=SONNET),
    }
    for name, fields in changes.items():
        name = name.replace("_", "-")
        if fields is None:
            del base[name]
        else:
            for key, value in fields.items():
                setattr(base[name], key, value)
    return base


ROUTES = [
    # (request text, hints, tier changes, budget left, expected tier, expected fragment of reasons/notes)
    (SIMPLE, {}, {}, 10.0, "quick", "simple"),
    (MODERATE, {}, {}, 10.0, "local", "moderate"),
    (HARD, {}, {}, 10.0, "external", "complex reasoning"),
    (HARD, {"local_only": True}, {}, 10.0, "local-large", "local_only is set"),
    (HARD, {}, {}, 0.0, "local-large", "budget is exhausted"),
    (HARD, {"max_cost_usd": 0.0}, {}, 10.0, "local-large", "exceeds max_cost_usd"),
    (SIMPLE, {"high_value": True}, {}, 10.0, "external", "high-value"),
    (SIMPLE, {"high_value": True}, {"external": {"unavailable": "ANTHROPIC_API_KEY is not set",
                                                  "missing_credential": "ANTHROPIC_API_KEY"}}, 10.0,
     "local-large", "ANTHROPIC_API_KEY"),
    (SIMPLE, {}, {"quick": {"quota_left": 0.1}}, 10.0, "external", "10% of its daily quota"),
    (SIMPLE, {}, {"quick": {"quota_left": 0.5}}, 10.0, "quick", "simple"),
    (SIMPLE, {}, {"quick": {"unavailable": "host desktop is busy"}}, 10.0, "local", "host desktop is busy"),
    (SIMPLE, {"tier": "local-large"}, {}, 10.0, "local-large", "caller asked for tier local-large"),
    (SIMPLE, {"model": "qwen2.5:3b"}, {}, 10.0, "local", "caller asked for model qwen2.5:3b"),
    (SIMPLE, {}, {"quick": None}, 10.0, "local", "quick is not configured"),
    ("x" * 20_000, {}, {}, 10.0, "local", "long input"),
    ("x" * 40_000, {}, {}, 10.0, "external", "fit no local context window"),
]


@pytest.mark.parametrize(("text", "hints", "changes", "budget", "tier", "why"), ROUTES)
def test_routing_decisions(text: str, hints: dict, changes: dict, budget: float, tier: str, why: str) -> None:
    decision = decide(text, 256, Hints(**hints), tiers(**changes), budget)
    assert decision.tier == tier
    assert why in " ".join(decision.reasons + decision.notes)
    assert decision.chain[0].tier == tier
    assert len({c.tier for c in decision.chain}) == len(decision.chain)


def test_external_never_in_a_local_only_chain() -> None:
    decision = decide(SIMPLE, 64, Hints(local_only=True, high_value=True), tiers(local={"fallback": ["external"]}), 10)
    assert all(c.tier != "external" for c in decision.chain)


def test_chain_skips_tiers_whose_context_is_too_small() -> None:
    decision = decide("word " * 5000, 512, Hints(tier="quick"), tiers(), 10)  # ~6250 tokens > quick's 4096
    assert decision.tier == "local" and "context window" in " ".join(decision.notes)


def test_external_cost_estimate_uses_the_price_table() -> None:
    decision = decide(HARD, 1000, Hints(), tiers(), 10)
    tokens_in = classifier.estimate_tokens(HARD)
    assert decision.estimated_cost_usd == pytest.approx((tokens_in * 3 + 1000 * 15) / 1e6, abs=1e-6)


@pytest.mark.parametrize(("hints", "max_tokens", "error", "field"), [
    ({"tier": "huge"}, 64, InvalidInput, "tier"),
    ({"model": "gpt-9"}, 64, InvalidInput, "model"),
    ({"tier": "quick", "model": "qwen2.5:7b"}, 64, InvalidInput, "model"),
    ({"max_cost_usd": -1}, 64, InvalidInput, "max_cost_usd"),
    ({}, 0, InvalidInput, "max_tokens"),
    ({}, -5, InvalidInput, "max_tokens"),
    ({}, 200_000, InvalidInput, "max_tokens"),
    ({"tier": "external", "local_only": True}, 64, InvalidInput, "tier"),
])
def test_bad_hints_are_refused(hints: dict, max_tokens: int, error: type, field: str) -> None:
    with pytest.raises(error) as info:
        decide(SIMPLE, max_tokens, Hints(**hints), tiers(), 10)
    assert info.value.field == field


def test_forced_external_without_key_names_the_variable() -> None:
    state = tiers(external={"unavailable": "ANTHROPIC_API_KEY is not set", "missing_credential": "ANTHROPIC_API_KEY"})
    with pytest.raises(MissingCredential, match="ANTHROPIC_API_KEY"):
        decide(SIMPLE, 64, Hints(tier="external"), state, 10)


def test_tier_not_configured_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not configured"):
        decide(SIMPLE, 64, Hints(tier="external"), tiers(external=None), 10)


def test_everything_down_names_each_tier() -> None:
    down = {"unavailable": "circuit open"}
    with pytest.raises(NoBackendAvailable) as info:
        decide(SIMPLE, 64, Hints(local_only=True), tiers(quick=down, local=down, local_large=down), 10)
    assert len(info.value.attempts) == 3 and all("circuit open" in a for a in info.value.attempts)


def test_no_tiers_configured() -> None:
    with pytest.raises(NoBackendAvailable, match="no tier is configured"):
        decide(SIMPLE, 64, Hints(), {}, 10)


def test_classifier_levels() -> None:
    assert classifier.estimate(SIMPLE).level == "simple"
    assert classifier.estimate("Translate 'hello' to French, one word").score == 0.0
    hard = classifier.estimate(HARD)
    assert hard.level == "complex" and any("code" in r for r in hard.reasons)


@pytest.mark.parametrize(("prompt", "messages", "field"), [
    (None, None, "prompt"),
    ("hi", [{"role": "user", "content": "hi"}], "prompt"),
    ("   ", None, "prompt"),
    (None, [], "messages"),
    (None, [{"role": "robot", "content": "beep"}], "messages[0].role"),
    (None, [{"role": "user", "content": ""}], "messages[0].content"),
    (None, [{"role": "system", "content": "be terse"}], "messages"),
    (None, ["hello"], "messages[0]"),
])
def test_bad_messages_are_refused(prompt: str | None, messages: list | None, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build_messages(prompt, messages)
    assert info.value.field == field


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=10, clock=lambda: now[0])
    breaker.failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.failure()  # a failed probe reopens at once
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


async def test_queue_serves_interactive_before_background() -> None:
    gate = PriorityGate("gpu", slots=1, max_queue=10)
    order: list[str] = []
    positions: dict[str, list[int]] = {}
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot("interactive"):
            await release.wait()

    async def job(name: str, priority: str) -> None:
        async def seen(n: int) -> None:
            positions.setdefault(name, []).append(n)
        async with gate.slot(priority, seen):
            order.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    jobs = [asyncio.create_task(job("bg1", "background")), asyncio.create_task(job("bg2", "background"))]
    await asyncio.sleep(0)
    jobs.append(asyncio.create_task(job("ia", "interactive")))
    await asyncio.sleep(0.01)
    assert gate.depth == 3 and gate.in_use == 1
    release.set()
    await asyncio.gather(holder, *jobs)
    assert order == ["ia", "bg1", "bg2"]
    assert positions["ia"][-1] == 1 and positions["bg2"][0] == 2
    assert gate.in_use == 0 and gate.depth == 0


async def test_queue_refuses_past_max_queue_and_survives_cancellation() -> None:
    gate = PriorityGate("gpu", slots=1, max_queue=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        async with gate.slot():
            pass
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert gate.depth == 0
    release.set()
    await holder
    assert gate.in_use == 0


def test_config_rejects_a_tier_without_its_backend(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "chiffon.yaml"
    cfg.write_text("llm:\n  tiers:\n    quick: {backend: nowhere, model: m}\n")
    with pytest.raises(ConfigError, match="nowhere"):
        load_settings(cfg)
    cfg.write_text("llm:\n  monthly_budget_usd: -5\n")
    with pytest.raises(ConfigError, match="monthly_budget_usd"):
        load_settings(cfg)
    cfg.write_text("llm:\n  tiers:\n    huge: {backend: b, model: m}\n  backends:\n    b: {kind: ollama, url: http://x}\n")
    with pytest.raises(ConfigError, match="huge"):
        load_settings(cfg)


def test_shipped_homelab_config_has_four_tiers() -> None:
    settings = load_settings(host="ai")
    assert list(settings.llm.tiers) == ["quick", "local", "local-large", "external"]
    assert settings.llm.tiers["external"].model in settings.llm.prices
    assert load_settings(host="desktop").llm.tiers == {}  # elsewhere: no LLM unless configured


def test_a_tier_that_is_not_configured_has_a_nearest_one() -> None:
    assert nearest_configured("local", {"quick"}) == "quick"
    assert nearest_configured("local", {"quick", "local-large"}) == "local-large"
    assert nearest_configured("external", {"external"}) == "external" and nearest_configured("quick", set()) is None
