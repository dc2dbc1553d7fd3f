"""chiffon-llm's tools through the orchestrator (mounted as ``llm``), and the planner using the quick tier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.exceptions import ToolError

from chiffon.orchestrator.planner import parse_answer
from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible.service import AnsibleService
from chiffon.servers.llm.router import Router
from chiffon.shared.config import LLMSettings
from chiffon.shared.runtime import Runtime
from tests.conftest import KUMA_REQUEST
from tests.llm.fakes import FakeState


@pytest_asyncio.fixture
async def client(router: Router, rt: Runtime, repo: Path) -> AsyncIterator[Client]:
    async with Client(create_orchestrator(AnsibleService.for_runtime(rt, repo), router)) as c:
        yield c


async def test_llm_tools_are_mounted(client: Client) -> None:
    names = {t.name for t in await client.list_tools()}
    assert {"llm_chat", "llm_route", "llm_models", "llm_embed", "llm_usage", "plan_request"} <= names


async def test_chat_streams_progress_and_reports_the_route(router: Router, rt: Runtime, repo: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    server = create_orchestrator(AnsibleService.for_runtime(rt, repo), router)
    async with Client(server, progress_handler=progress) as c:
        out = (await c.call_tool("llm_chat", {"prompt": "What port does Redis use?", "max_tokens": 20,
                                          "temperature": 0.0})).structured_content
    assert out["answered_by"]["tier"] == "quick" and out["route"]["reasons"]
    assert out["tokens_out"] >= 0 and out["latency_ms"] > 0 and "ttft_ms" in out
    assert seen and "quick (tiny-quick)" in (seen[0][2] or "")


async def test_route_is_a_dry_run(client: Client, anthropic_fake: tuple[FakeState, str]) -> None:
    out = (await client.call_tool("llm_route", {"prompt": "hello", "high_value": True})).structured_content
    assert out["tier"] == "external" and "marked high-value" in out["reasons"]
    assert [c["tier"] for c in out["chain"]][:1] == ["external"]
    assert anthropic_fake[0].requests == []


async def test_models_usage_and_embed(client: Client) -> None:
    models = (await client.call_tool("llm_models", {})).structured_content
    tiers = {t["tier"]: t for t in models["tiers"]}
    assert set(tiers) == {"quick", "local", "local-large", "external"}
    assert tiers["quick"]["healthy"] and tiers["quick"]["breaker"] == "closed" and tiers["quick"]["queue_depth"] == 0
    assert tiers["external"]["health"] == "api reachable"
    assert models["external_budget_left_usd"] <= models["monthly_budget_usd"]
    vectors = (await client.call_tool("llm_embed", {"texts": ["a", "bb"]})).structured_content
    assert vectors["dimensions"] == 3 and len(vectors["vectors"]) == 2
    usage = (await client.call_tool("llm_usage", {"since": "1d", "group_by": "backend"})).structured_content
    assert isinstance(usage["result"], list)


@pytest.mark.parametrize(("args", "fragment"), [
    ({"prompt": ""}, "prompt: is empty"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "hi", "max_tokens": 10_000_000}, "max_tokens"),
    ({"prompt": "hi", "model": "gpt-5"}, "unknown model"),
    ({"prompt": "hi", "max_cost_usd": -1}, "max_cost_usd"),
])
async def test_bad_chat_input_is_a_clear_tool_error(client: Client, args: dict, fragment: str) -> None:
    with pytest.raises(ToolError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        await client.call_tool("llm_chat", args)


async def test_unknown_tier_is_refused_by_the_schema(client: Client) -> None:
    with pytest.raises(ToolError, match="tier"):
        await client.call_tool("llm_route", {"prompt": "hi", "tier": "gigantic"})


async def test_planner_takes_the_llms_choice_and_explanation(
    llm_settings: LLMSettings, rt: Runtime, repo: Path, ollama_fake: tuple[FakeState, str]
) -> None:
    # The quick tier is the Ollama fake here, so the answer is well-formed JSON.
    settings = llm_settings.model_copy(update={"tiers": {"quick": llm_settings.tiers["local-large"]}})
    explanation = "Deploys Uptime Kuma on east with one monitor per portal; check the monitors.json diff."
    ollama_fake[0].reply = lambda msgs: "Sure:\n" + json.dumps({"playbook": "deploy-uptime-kuma.yml",
                                                                "explanation": explanation})
    router = await Router.open(settings, store=rt.store)
    try:
        async with Client(create_orchestrator(AnsibleService.for_runtime(rt, repo), router)) as c:
            plan = (await c.call_tool("plan_request", {"request": KUMA_REQUEST})).structured_content
    finally:
        ollama_fake[0].reply = FakeState().reply
        await router.aclose()
    assert plan["playbook"] == "deploy-uptime-kuma.yml"
    assert plan["match"]["planner"] == {"chosen_by": "llm", "scoring": "words", "model": "qwen2.5:7b",
                                        "tier": "quick", "explanation": explanation}
    prompt = ollama_fake[0].requests[-1]["messages"][-1]["content"]
    assert KUMA_REQUEST in prompt and "deploy-uptime-kuma.yml" in prompt


async def test_planner_keeps_retrieval_when_the_model_talks_nonsense(client: Client) -> None:
    # The quick tier is a random-weight llama.cpp model: its output is never valid JSON.
    plan = (await client.call_tool("plan_request", {"request": "deploy redis"})).structured_content
    assert plan["playbook"] == "deploy-redis.yml"
    assert plan["match"]["planner"]["chosen_by"] == "retrieval" and plan["match"]["planner"]["llm_error"]


@pytest.mark.parametrize(("text", "error"), [
    ("no json here", "no JSON object"),
    ('{"playbook": "rm-rf.yml", "explanation": "a long enough explanation of it"}', "not a candidate"),
    ('{"playbook": "deploy-redis.yml"}', "invalid JSON answer"),
    ('{"playbook": "deploy-redis.yml", "explanation": 5', "no JSON object"),
])
def test_planner_output_validation(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_answer(text, ["deploy-redis.yml"])
