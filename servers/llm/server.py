"""MCP server ``chiffon-llm``: chat, route, models, embed and usage over the router.

Tools only validate arguments and call :class:`~servers.llm.router.Router`.
``chat`` streams: progress notifications carry the queue position while the
request waits for a local model, then the pieces generated so far.
"""

from __future__ import annotations

from typing import Any, Literal

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field

from chiffon.servers.llm.ledger import GROUP_COLUMNS
from chiffon.servers.llm.router import Router
from chiffon.servers.llm.types import ChatResult, EmbedResult, Hints, ModelsReport, RouteDecision, build_messages
from chiffon.shared.audit import parse_since
from chiffon.shared.errors import InvalidInput
from chiffon.shared.mcp import ChiffonErrors

# A completion changes nothing on any machine; it may cost money (external tier), hence open world.
GENERATE = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=False, openWorldHint=True)
LOOKUP = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)

TierArg = Literal["quick", "local", "local-large", "external"] | None


def create_llm_server(router: Router) -> FastMCP:
    """The ``chiffon-llm`` server over ``router``."""
    mcp = FastMCP(
        "chiffon-llm",
        instructions=(
            "LLM routing across the homelab's llama.cpp and Ollama models and Claude. chat answers a prompt "
            "with the tier that fits (quick, local, local-large, external); route explains that choice without "
            "calling a model; models shows health, circuit breakers, queues and quota; usage reports the cost "
            "ledger."
        ),
        mask_error_details=True,
    )
    mcp.add_middleware(ChiffonErrors())

    def hints(tier: str | None, model: str | None, high_value: bool, priority: str, max_cost_usd: float | None,
              local_only: bool, caller: str) -> Hints:
        return Hints(tier=tier, model=model, high_value=high_value, priority=priority,  # type: ignore[arg-type]
                     max_cost_usd=max_cost_usd, local_only=local_only, caller=caller)

    @mcp.tool(annotations=GENERATE)
    async def chat(
        ctx: Context,
        prompt: str | None = Field(None, description="A single user prompt (or give messages)."),
        messages: list[dict[str, Any]] | None = Field(
            None, description="Conversation: [{role: system|user|assistant, content}] (or give prompt)."),
        system: str | None = Field(None, description="System prompt, prepended."),
        tier: TierArg = Field(None, description="Force a tier; default: the router decides."),
        model: str | None = Field(None, description="Force a configured model."),
        high_value: bool = Field(False, description="Worth an external (paid) model."),
        priority: Literal["interactive", "background"] = Field("interactive"),
        max_cost_usd: float | None = Field(None, description="Most this request may cost, USD; 0: local only."),
        local_only: bool = Field(False, description="Never leave the homelab."),
        max_tokens: int = Field(512, description="Completion limit, tokens."),
        temperature: float = Field(0.2, description="Sampling temperature, 0 to 2."),
        caller: str = Field("mcp", description="Who asks, for the ledger (agent role, client)."),
    ) -> ChatResult:
        """Answer with the right model: text, the route taken (and why), tokens, cost in USD, latency,
        time to first token and tokens/s. Falls back along the tier chain on errors; never returns a
        half-finished answer."""
        conversation = build_messages(prompt, messages, system)

        async def progress(done: float, total: float | None, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await router.chat(conversation, hints(tier, model, high_value, priority, max_cost_usd, local_only, caller),
                                 max_tokens=max_tokens, temperature=temperature, on_progress=progress)

    @mcp.tool(annotations=LOOKUP)
    async def route(
        prompt: str | None = Field(None, description="A single user prompt (or give messages)."),
        messages: list[dict[str, Any]] | None = Field(None, description="Conversation [{role, content}]."),
        tier: TierArg = Field(None),
        model: str | None = Field(None),
        high_value: bool = Field(False),
        priority: Literal["interactive", "background"] = Field("interactive"),
        max_cost_usd: float | None = Field(None),
        local_only: bool = Field(False),
        max_tokens: int = Field(512),
    ) -> RouteDecision:
        """Dry run: which tier, backend and model would answer, why, and the fallback chain. Calls no model."""
        return await router.route(build_messages(prompt, messages),
                                  hints(tier, model, high_value, priority, max_cost_usd, local_only, "route"), max_tokens)

    @mcp.tool(annotations=LOOKUP)
    async def models() -> ModelsReport:
        """Each tier: backend, model, health (probe, never a generation), circuit breaker, queue depth,
        daily quota left; and the external budget left this month."""
        return await router.models()

    @mcp.tool(annotations=LOOKUP)
    async def embed(
        texts: list[str] = Field(description="Texts to embed (1 to 256)."),
        model: str | None = Field(None, description="Embedding model; default llm.embeddings.model."),
    ) -> EmbedResult:
        """One embedding vector per text, in order."""
        return await router.embed(texts, model)

    @mcp.tool(annotations=LOOKUP)
    async def usage(
        since: str = Field("30d", description="7d, 12h, 30m, 2w or an ISO date."),
        group_by: Literal["tier", "backend", "model", "caller", "day", "status"] = Field("tier"),
    ) -> list[dict[str, Any]]:
        """Requests, errors, tokens in/out, cost in USD, p50/p95 latency, mean time to first token and
        tokens/s per group, from the ledger."""
        if group_by not in GROUP_COLUMNS:
            raise InvalidInput("group_by", f"one of {', '.join(GROUP_COLUMNS)}")
        return await router.usage(parse_since(since), group_by)

    return mcp
