"""A real llama.cpp server killed behind the router opens an incident on the error bus; it resolves when the
server comes back."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from chiffon.orchestrator.incidents import Correlator, incidents
from chiffon.servers.llm.router import Router
from chiffon.servers.llm.types import Hints
from chiffon.shared import error_bus
from chiffon.shared.config import LLMSettings
from chiffon.shared.errors import NoBackendAvailable
from chiffon.shared.runtime import Runtime
from tests.llm.conftest import N_CTX, LlamaServer
from tests.llm.test_router import HI


async def test_killing_a_backend_opens_an_incident_that_resolves_when_it_returns(
        gguf_models: tuple[Path, Path], rt: Runtime) -> None:
    backend = f"desk-{secrets.token_hex(3)}"
    server = LlamaServer(gguf_models[0], "tiny-quick").start()
    settings = LLMSettings.model_validate({
        "backends": {backend: {"kind": "llamacpp", "url": server.url, "slots": 1, "timeout_s": 30,
                               "connect_timeout_s": 1}},
        "tiers": {"quick": {"backend": backend, "model": "tiny-quick", "context_window": N_CTX}},
        "breaker_failures": 2, "breaker_cooldown_s": 0.1, "retries": 0})
    router = await Router.open(settings, store=rt.store)
    reporter = error_bus.attach(rt.bus)
    try:
        server.stop()
        for _ in range(2):
            with pytest.raises(NoBackendAvailable):
                await router.chat(HI, Hints(tier="quick"), max_tokens=4)
        await reporter.drain()
        await Correlator(rt).catch_up()
        (opened,) = [i for i in await incidents(rt) if f"backend:{backend}" in i["keys"]]
        assert opened["status"] == "open" and opened["severity"] == "error" and opened["events"] >= 3
        server.start()
        await router.chat(HI, Hints(tier="quick"), max_tokens=4)
        await reporter.drain()
        await Correlator(rt).catch_up()
        (closed,) = [i for i in await incidents(rt) if i["id"] == opened["id"]]
        assert closed["status"] == "resolved"
    finally:
        await error_bus.detach(reporter)
        await router.aclose()
        server.stop()
