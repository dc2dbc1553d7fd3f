"""Structured answers: every local backend decodes under the JSON schema it is given, and ``chat_json`` asks
once more, then fails clearly.

A random-weight model cannot produce one JSON object of a schema by chance; when its reply validates, the
backend turned the schema into a decoding grammar. The Ollama fake cannot decode, so there the test checks the
wire: the schema goes in the request's ``format`` field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from chiffon.servers.llm.router import Router
from chiffon.servers.llm.structured import chat_json
from chiffon.servers.llm.types import Hints, build_messages
from chiffon.shared.config import LLMSettings
from chiffon.shared.errors import InvalidReply
from chiffon.shared.runtime import Runtime
from tests.llm.conftest import LlamaServer
from tests.llm.fakes import FakeState

PICK = {"type": "object", "properties": {"pick": {"enum": ["alpha", "beta"]}, "n": {"type": "integer"}},
        "required": ["pick", "n"], "additionalProperties": False}
ASK = build_messages("Pick alpha or beta and a number.", None)


def one_tier(kind: str, llama: LlamaServer, gguf: Path, ollama_url: str) -> LLMSettings:
    backend = {"llamacpp": {"kind": "llamacpp", "url": llama.url, "timeout_s": 60},
               "inprocess": {"kind": "llamacpp-inprocess", "model_path": str(gguf), "n_ctx": 512, "n_threads": 1},
               "ollama": {"kind": "ollama", "url": ollama_url, "timeout_s": 30}}[kind]
    return LLMSettings.model_validate({"backends": {"b": backend},
                                       "tiers": {"quick": {"backend": "b", "model": "m", "context_window": 512}}})


@pytest.fixture
def ollama(ollama_fake: tuple[FakeState, str]) -> Iterator[FakeState]:
    state = ollama_fake[0]
    state.requests.clear()
    yield state
    state.reply = FakeState().reply


@pytest.mark.parametrize("kind", ["llamacpp", "inprocess", "ollama"])
async def test_each_local_backend_decodes_under_the_schema(
        kind: str, llama_servers: tuple[LlamaServer, LlamaServer], gguf_models: tuple[Path, Path],
        ollama_fake: tuple[FakeState, str], ollama: FakeState, rt: Runtime) -> None:
    ollama.reply = lambda msgs: '{"pick": "beta", "n": 7}'
    router = await Router.open(one_tier(kind, llama_servers[0], gguf_models[0], ollama_fake[1]), store=rt.store)
    try:
        result = await router.chat(ASK, Hints(tier="quick"), max_tokens=64, temperature=0.0, json_schema=PICK)
    finally:
        await router.aclose()
    jsonschema.validate(json.loads(result.text), PICK)  # random weights: only a grammar gets this right
    if kind == "ollama":
        assert ollama.requests[-1]["format"] == PICK


async def test_chat_json_asks_once_more_with_the_reason(llm_settings: LLMSettings, ollama: FakeState,
                                                        rt: Runtime) -> None:
    replies = iter(['{"pick": "gamma", "n": 1}', '{"pick": "alpha", "n": 2}'])
    ollama.reply = lambda msgs: next(replies)
    router = await Router.open(llm_settings, store=rt.store)
    try:
        value, result = await chat_json(router, ASK, Hints(tier="local-large"), PICK)
    finally:
        await router.aclose()
    assert value == {"pick": "alpha", "n": 2} and result.text == '{"pick": "alpha", "n": 2}'
    retry = ollama.requests[-1]["messages"]
    assert retry[-2]["content"] == '{"pick": "gamma", "n": 1}' and "'gamma' is not one of" in retry[-1]["content"]


@pytest.mark.parametrize("reply", ["Sure! alpha.", '{"pick": "alpha"}', '{"pick": "alpha", "n": 1, "x": 0}'])
async def test_chat_json_fails_clearly_after_the_retry(reply: str, llm_settings: LLMSettings, ollama: FakeState,
                                                       rt: Runtime) -> None:
    ollama.reply = lambda msgs: reply
    router = await Router.open(llm_settings, store=rt.store)
    try:
        with pytest.raises(InvalidReply, match=r"planner: no valid answer in 2 replies \(last: .+\)"):
            await chat_json(router, ASK, Hints(tier="local-large", caller="planner"), PICK)
    finally:
        await router.aclose()
    assert len(ollama.requests) == 2
