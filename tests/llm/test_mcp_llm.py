"""chiffon-llm's tools through the orchestrator (mounted as ``llm``), and the planner using the quick tier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.exceptions import ToolError

from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible.service import AnsibleService
from chiffon.servers.llm.router import Router
from chiffon.shared.config import LLMSettings
from chiffon.shared.runtime import Runtime
from tests.conftest import KUMA_REQUEST, git_commit_all, make_repo
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


async def _plan(settings: LLMSettings, rt: Runtime, repo: Path, request: str) -> dict[str, Any]:
    """``plan_request`` through the orchestrator, its quick tier opened from ``settings`` for this one plan."""
    router = await Router.open(settings, store=rt.store)
    try:
        async with Client(create_orchestrator(AnsibleService.for_runtime(rt, repo), router)) as c:
            return (await c.call_tool("plan_request", {"request": request})).structured_content
    finally:
        await router.aclose()


@pytest.fixture(scope="module")
def kuma_twice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repo with a second Uptime Kuma playbook (a k3s variant, as real repos keep): "Deploy Uptime
    Kuma" then names two playbooks equally, which only a human or the quick tier can choose between."""
    repo = make_repo(tmp_path_factory.mktemp("twice") / "homelab-infra")
    (repo / "k3s").mkdir()
    (repo / "k3s" / "deploy-uptime-kuma.yml").write_text((repo / "deploy-uptime-kuma.yml").read_text())
    git_commit_all(repo)
    return repo


async def test_planner_does_not_ask_the_llm_when_the_request_names_one_playbook(
    llm_settings: LLMSettings, rt: Runtime, repo: Path, ollama_fake: tuple[FakeState, str]
) -> None:
    settings = llm_settings.model_copy(update={"tiers": {"quick": llm_settings.tiers["local-large"]}})
    ollama_fake[0].requests.clear()
    plan = await _plan(settings, rt, repo, "deploy redis")
    note = plan["match"]["planner"]
    assert plan["playbook"] == "deploy-redis.yml" and note["chosen_by"] == "retrieval" and "llm_skipped" in note
    assert ollama_fake[0].requests == []  # a small model never overrules a sure answer


async def test_planner_takes_the_llms_choice_and_reason(
    llm_settings: LLMSettings, rt: Runtime, kuma_twice: Path, ollama_fake: tuple[FakeState, str]
) -> None:
    # The quick tier is the Ollama fake here: it answers what it is told, and records what it was sent.
    settings = llm_settings.model_copy(update={"tiers": {"quick": llm_settings.tiers["local-large"]}})
    reason = "Uptime Kuma is what they asked to deploy, with one monitor per portal."
    ollama_fake[0].reply = lambda msgs: json.dumps({"playbook": "deploy-uptime-kuma.yml", "reason": reason})
    try:
        plan = await _plan(settings, rt, kuma_twice, KUMA_REQUEST)
    finally:
        ollama_fake[0].reply = FakeState().reply
    assert plan["playbook"] == "deploy-uptime-kuma.yml"
    note = plan["match"]["planner"]
    assert {k: note[k] for k in ("chosen_by", "model", "tier", "reason")} == {
        "chosen_by": "llm", "model": "qwen2.5:7b", "tier": "quick", "reason": reason}
    sent = ollama_fake[0].requests[-1]
    assert KUMA_REQUEST in sent["messages"][-1]["content"]
    # Ollama decodes under the schema's ``format``: the candidates are an enum, so nothing else can be named.
    assert set(sent["format"]["properties"]["playbook"]["enum"]) == {"deploy-uptime-kuma.yml",
                                                                     "k3s/deploy-uptime-kuma.yml"}
    assert sent["format"]["required"] == ["playbook", "reason"]


async def test_planner_keeps_retrieval_after_two_invalid_answers(
    llm_settings: LLMSettings, rt: Runtime, kuma_twice: Path, ollama_fake: tuple[FakeState, str]
) -> None:
    settings = llm_settings.model_copy(update={"tiers": {"quick": llm_settings.tiers["local-large"]}})
    ollama_fake[0].reply = lambda msgs: json.dumps({"playbook": "rm-rf.yml", "reason": "a long enough reason"})
    ollama_fake[0].requests.clear()
    try:
        plan = await _plan(settings, rt, kuma_twice, "Deploy Uptime Kuma")
    finally:
        ollama_fake[0].reply = FakeState().reply
    note = plan["match"]["planner"]
    assert plan["playbook"] == "deploy-uptime-kuma.yml" and note["chosen_by"] == "retrieval"
    assert "no valid answer in 2 replies" in note["llm_error"] and "rm-rf.yml" in note["llm_error"]
    second = ollama_fake[0].requests[-1]["messages"]
    assert len(ollama_fake[0].requests) == 2 and "not valid" in second[-1]["content"]


async def test_planner_keeps_retrieval_past_its_deadline(
    llm_settings: LLMSettings, rt: Runtime, kuma_twice: Path, ollama_fake: tuple[FakeState, str]
) -> None:
    settings = llm_settings.model_copy(update={"tiers": {"quick": llm_settings.tiers["local-large"]},
                                               "planner_deadline_s": 0.3})
    ollama_fake[0].reply = lambda msgs: json.dumps({"playbook": "deploy-uptime-kuma.yml", "reason": "x" * 40})
    ollama_fake[0].delay_s = 0.2  # per streamed word: the answer takes longer than the deadline
    try:
        plan = await _plan(settings, rt, kuma_twice, "Deploy Uptime Kuma")
    finally:
        ollama_fake[0].reply, ollama_fake[0].delay_s = FakeState().reply, 0.0
    note = plan["match"]["planner"]
    assert plan["playbook"] == "deploy-uptime-kuma.yml" and note["chosen_by"] == "retrieval"
    assert "did not answer within 0.3 s" in note["llm_error"]
