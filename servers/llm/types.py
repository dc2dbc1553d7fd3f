"""Data shapes of the LLM router: messages, hints, stream chunks, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from chiffon.shared.errors import InvalidInput

Role = Literal["system", "user", "assistant"]
Priority = Literal["interactive", "background"]
MAX_MESSAGES = 200


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
class ToolCall:
    """A native tool call the model made (backends with tool use: Anthropic). ``arguments`` is the parsed input."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Done:
    """End of a stream: token counts (None when the backend does not report them) and why it stopped."""

    tokens_in: int | None
    tokens_out: int | None
    finish_reason: str


Chunk = Delta | ToolCall | Done


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
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, description="Native tool calls, in order: "
                                                                             "[{name, arguments}] (tools= given and "
                                                                             "the backend has tool use).")


class TierStatus(BaseModel):
    """One tier as ``models()`` reports it."""

    tier: str
    backend: str
    kind: str
    model: str
    host: str | None
    host_status: str
    healthy: bool
    health: str = Field(description="Probe result: /v1/models, /api/tags or the API key check.")
    breaker: str = Field(description="closed, open or half_open.")
    breaker_retry_in_s: float
    slots: int
    in_use: int
    queue_depth: int
    available: bool = Field(description="Would the router send it a request now?")
    why_unavailable: str | None
    quota_tokens_per_day: int | None
    quota_left: float | None = Field(description="Fraction of the daily local quota left; null: unlimited.")
    context_window: int


class ModelsReport(BaseModel):
    """Every tier's state plus the external budget."""

    tiers: list[TierStatus]
    monthly_budget_usd: float
    external_spent_usd: float
    external_budget_left_usd: float
    embeddings: dict[str, str]


class EmbedResult(BaseModel):
    """Vectors, one per input text, in order."""

    backend: str
    model: str
    dimensions: int
    vectors: list[list[float]]


def build_messages(prompt: str | None, messages: list[dict[str, Any]] | list[Message] | None,
                   system: str | None = None) -> list[Message]:
    """Validate the conversation: exactly one of ``prompt`` or ``messages``.

    Raises:
        InvalidInput: both or neither given, an empty prompt or message, an unknown role, no user message.
    """
    if (prompt is None) == (messages is None):
        raise InvalidInput("prompt", "give either prompt or messages, not both or neither")
    out: list[Message] = []
    if system is not None and system.strip():
        out.append(Message(role="system", content=system))
    if prompt is not None:
        if not prompt.strip():
            raise InvalidInput("prompt", "is empty")
        out.append(Message(role="user", content=prompt))
        return out
    if not messages:
        raise InvalidInput("messages", "is empty")
    if len(messages) > MAX_MESSAGES:
        raise InvalidInput("messages", f"{len(messages)} messages; at most {MAX_MESSAGES}")
    for i, raw in enumerate(messages):
        item = raw.model_dump() if isinstance(raw, Message) else raw
        if not isinstance(item, dict):
            raise InvalidInput(f"messages[{i}]", "must be an object {role, content}")
        role, content = item.get("role"), item.get("content")
        if role not in ("system", "user", "assistant"):
            raise InvalidInput(f"messages[{i}].role", f"{role!r} is not one of system, user, assistant")
        if not isinstance(content, str) or not content.strip():
            raise InvalidInput(f"messages[{i}].content", "must be non-empty text")
        out.append(Message(role=role, content=content))
    if not any(m.role == "user" for m in out):
        raise InvalidInput("messages", "needs at least one user message")
    return out
