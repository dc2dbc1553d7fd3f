"""Real llama.cpp servers on tiny random-weight GGUF models, and the Ollama/Anthropic fakes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from chiffon.servers.llm.router import Router
from chiffon.servers.llm.tiny_model import write_tiny_llama
from chiffon.shared.config import LLMSettings
from chiffon.shared.runtime import Runtime
from tests.llm.fakes import API_KEY, FakeState, anthropic_app, free_port, ollama_app, serve_app

N_CTX = 512


class LlamaServer:
    """``python -m llama_cpp.server`` on one GGUF file; stop and start it again on the same port.

    Default ``--interrupt_requests`` (True): with False, a streamed request that overflows the context
    raises inside the server's generator and leaves its model lock held, so every later request hangs
    (llama-cpp-python 0.3.36). Tests never send it concurrent requests, so interruption never happens.
    """

    def __init__(self, model: Path, alias: str, port: int | None = None, n_ctx: int = N_CTX) -> None:
        self.model, self.alias, self.port, self.n_ctx = model, alias, port or free_port(), n_ctx
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LlamaServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", self.alias,
             "--n_ctx", str(self.n_ctx), "--n_threads", "1", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama_cpp.server on {self.url} did not answer within 90 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def gguf_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gguf")
    return write_tiny_llama(root / "tiny-quick.gguf", seed=0), write_tiny_llama(root / "tiny-local.gguf", seed=1)


@pytest.fixture(scope="session")
def llama_servers(gguf_models: tuple[Path, Path]) -> Iterator[tuple[LlamaServer, LlamaServer]]:
    quick = LlamaServer(gguf_models[0], "tiny-quick").start()
    local = LlamaServer(gguf_models[1], "tiny-local").start()
    yield quick, local
    quick.stop()
    local.stop()


@pytest.fixture(scope="session")
def ollama_fake() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with serve_app(ollama_app(state)) as url:
        yield state, url


@pytest.fixture(scope="session")
def anthropic_fake() -> Iterator[tuple[FakeState, str]]:
    state = FakeState(reply=lambda msgs: "Claude here: the answer is 42")
    with serve_app(anthropic_app(state)) as url:
        yield state, url


@pytest.fixture(autouse=True)
def reset_fakes(request: pytest.FixtureRequest) -> None:
    for name in ("ollama_fake", "anthropic_fake"):
        if name in request.fixturenames:
            state = request.getfixturevalue(name)[0]
            state.mode, state.delay_s = "ok", 0.0
            state.requests.clear()


def homelab_llm(quick_url: str, local_url: str, ollama_url: str, anthropic_url: str, **overrides: object) -> LLMSettings:
    """The homelab's four tiers pointed at the test servers; ``overrides`` replace top-level fields."""
    data: dict[str, object] = {
        "backends": {
            "desktop-llamacpp": {"kind": "llamacpp", "url": quick_url, "host": "desktop", "slots": 1,
                                 "timeout_s": 60, "connect_timeout_s": 1},
            "ai-llamacpp": {"kind": "llamacpp", "url": local_url, "host": "ai", "slots": 1, "timeout_s": 60,
                            "connect_timeout_s": 1},
            "ai-ollama": {"kind": "ollama", "url": ollama_url, "host": "ai", "slots": 1, "timeout_s": 30},
            "anthropic": {"kind": "anthropic", "url": anthropic_url, "timeout_s": 30},
        },
        "tiers": {
            "quick": {"backend": "desktop-llamacpp", "model": "tiny-quick", "context_window": N_CTX,
                      "daily_token_quota": 1_000_000_000},
            "local": {"backend": "ai-llamacpp", "model": "tiny-local", "context_window": N_CTX},
            "local-large": {"backend": "ai-ollama", "model": "qwen2.5:7b", "context_window": 8192},
            "external": {"backend": "anthropic", "model": "claude-sonnet-4-6", "context_window": 200_000},
        },
        "embeddings": {"backend": "ai-ollama", "model": "nomic-embed-text"},
        "prices": {"claude-sonnet-4-6": {"input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0}},
        "prices_source": "https://docs.claude.com/en/docs/about-claude/pricing (read 2026-11)",
        "monthly_budget_usd": 1000.0,
        "breaker_failures": 2,
        "breaker_cooldown_s": 0.5,
        "retries": 1,
        "retry_backoff_s": 0.01,
    }
    data.update(overrides)
    return LLMSettings.model_validate(data)


@pytest.fixture
def llm_settings(llama_servers: tuple[LlamaServer, LlamaServer], ollama_fake: tuple[FakeState, str],
                 anthropic_fake: tuple[FakeState, str], monkeypatch: pytest.MonkeyPatch) -> LLMSettings:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    return homelab_llm(llama_servers[0].url, llama_servers[1].url, ollama_fake[1], anthropic_fake[1])


@pytest_asyncio.fixture
async def router(llm_settings: LLMSettings, rt: Runtime) -> AsyncIterator[Router]:
    r = await Router.open(llm_settings, store=rt.store, bus=rt.bus)
    yield r
    await r.aclose()
