"""Data shapes of the LLM router: messages, hints, stream chunks, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant"]
Priority = Literal["interactive", "background"]


class Message(BaseModel):
    """One chat message."""

    role: Role
    content: str


class Hints(BaseModel):
    """What the caller tells the router about a request."""

    tier: str | None = Field(None, description="Force a tier: quick, local, local-large or external.")
    model: str | None = Field(None, description="Force a model; must be the model of a configured tier.")
    high_value: bool = Field(False, description="Worth paying for: prefer the external tier.")
    priority: Priority = Field("interactive", description="interactive requests wait ahead of background agents.")
    max_cost_usd: float | None = Field(None, description="Most this request may cost, USD; 0 means local only.")
    local_only: bool = Field(False, description="Never leave the homelab.")
    caller: str = Field("mcp", description="Who asked (agent role, 'planner', an MCP client); for the ledger.")


@dataclass(frozen=True)
class Delta:
    """A piece of streamed text."""

    text: str


@dataclass(frozen=True)
class Done:
    """End of a stream: token counts (None when the backend does not report them) and why it stopped."""

    tokens_in: int | None
    tokens_out: int | None
    finish_reason: str


Chunk = Delta | Done


@dataclass
class BackendHealth:
    """Result of a cheap health probe (never a generation)."""

    ok: bool
    detail: str
    models: list[str] = field(default_factory=list)


class Candidate(BaseModel):
    """A tier the router may try: its backend and model."""

    tier: str
    backend: str
    model: str


class RouteDecision(BaseModel):
    """Which tier answers and why; ``chain`` lists what is tried, in order."""

    tier: str
    backend: str
    model: str
    complexity: float = Field(description="Estimated complexity in [0, 1] (servers.llm.classifier).")
    reasons: list[str]
    chain: list[Candidate]
    estimated_tokens_in: int
    estimated_cost_usd: float
    notes: list[str] = Field(default_factory=list, description="Deviations from the preferred route.")


class ChatResult(BaseModel):
    """A complete answer (never a partial stream presented as whole)."""

    text: str
    route: RouteDecision
    answered_by: Candidate
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None = Field(description="Time to first token, ms.")
    tokens_per_s: float | None = Field(description="Completion tokens per second after the first token.")
    finish_reason: str
    notes: list[str] = Field(default_factory=list, description="Fallbacks, budget or quota notes.")
