"""MCP server ``chiffon-memory``: chat history, scoped vector memory, recall with scores and sources."""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any, Literal

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field

from chiffon.servers.memory import history as chat
from chiffon.servers.memory.history import ChatMessage
from chiffon.servers.memory.indexer import IndexReport, index_directory
from chiffon.servers.memory.service import MemoryService
from chiffon.servers.memory.vectors import Hit, Identity, Remembered
from chiffon.shared.errors import InvalidInput
from chiffon.shared.mcp import ChiffonErrors

READS = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
WRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
DELETES = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)

ScopeArg = Literal["session", "agent", "user", "role", "shared"]
CollectionArg = Literal["conversations", "codebase", "documentation"]


def create_memory_server(svc: MemoryService) -> FastMCP:
    """The ``chiffon-memory`` server over ``svc``."""
    mcp = FastMCP(
        "chiffon-memory",
        instructions=(
            "Long-lived memory. remember stores a fact in a scope (session, agent, user, role or shared); recall "
            "returns the closest memories you may see, with scores and sources; history and append_message keep "
            "the conversation; forget deletes. Near-duplicates update the existing memory."
        ),
        mask_error_details=True,
    )
    mcp.add_middleware(ChiffonErrors())
    vectors = svc.vectors

    @mcp.tool(annotations=WRITES)
    async def remember(
        text: str = Field(description="The fact, decision or note to keep."),
        scope: ScopeArg = Field("session", description="Who may recall it; shared: every agent."),
        session_id: str | None = Field(None), agent: str | None = Field(None), user_id: str | None = Field(None),
        role: str | None = Field(None),
        collection: CollectionArg = Field("conversations"),
        metadata: dict[str, Any] | None = Field(None, description="Flat fields: source, kind, plan_id..."),
    ) -> Remembered:
        """Store a memory; a near-duplicate in the same scope is updated instead (action says which)."""
        who = Identity(session_id=session_id, agent=agent, user_id=user_id, role=role)
        return await vectors.remember(text, scope, who, collection=collection, metadata=metadata)

    @mcp.tool(annotations=READS)
    async def recall(
        query: str = Field(description="What to look for, in plain language."),
        scopes: list[ScopeArg] | None = Field(None, description="Default: shared plus your own private scopes."),
        k: int = Field(5, description="How many, 1 to 50."),
        filters: dict[str, Any] | None = Field(None, description="Exact matches on source, kind, path, language..."),
        collections: list[CollectionArg] | None = Field(None, description="Default: all three."),
        session_id: str | None = Field(None), agent: str | None = Field(None), user_id: str | None = Field(None),
        role: str | None = Field(None),
    ) -> list[Hit]:
        """The closest memories you may see, best first, with cosine scores and sources."""
        who = Identity(session_id=session_id, agent=agent, user_id=user_id, role=role)
        return await vectors.recall(query, who, scopes=scopes, k=k, filters=filters,
                                    collections=collections)  # type: ignore[arg-type]

    @mcp.tool(annotations=WRITES)
    async def append_message(
        session_id: str = Field(description="Conversation id."),
        role: Literal["system", "user", "assistant", "tool"] = Field(description="Who spoke."),
        content: str = Field(description="The message text."),
        agent: str | None = Field(None), user_id: str | None = Field(None),
        tool_calls: list[dict[str, Any]] | None = Field(None), tokens: int | None = Field(None),
    ) -> ChatMessage:
        """Add a message to a session's history (the session is created on first use)."""
        return await chat.append_message(svc.rt.store, session_id, role, content, agent=agent, user_id=user_id,
                                         tool_calls=tool_calls, tokens=tokens,
                                         max_chars=svc.rt.settings.memory.max_text_chars)

    @mcp.tool(annotations=READS)
    async def history(
        session_id: str = Field(description="Conversation id."),
        limit: int = Field(50, description="Last N messages, 1 to 1000."),
        agent: str | None = Field(None, description="Only this agent's messages."),
    ) -> list[ChatMessage]:
        """A session's last messages, oldest first."""
        return await chat.history(svc.rt.store, session_id, limit, agent)

    @mcp.tool(annotations=DELETES)
    async def forget(
        collection: CollectionArg = Field("conversations"),
        ids: list[str] | None = Field(None, description="Memory ids from remember/recall."),
        filters: dict[str, Any] | None = Field(None, description="Delete every record matching these fields."),
        all: bool = Field(False, description="Drop the whole collection (also the way to re-embed it)."),
    ) -> dict[str, int]:
        """Delete memories by ids, by filter, or all of a collection; returns how many."""
        return {"deleted": await vectors.forget(collection, ids=ids, filters=filters, everything=all)}

    @mcp.tool(annotations=WRITES)
    async def index_repo(
        ctx: Context,
        path: str = Field(description="Directory to index (inside memory.index_roots or CHIFFON_REPO)."),
        collection: Literal["codebase", "documentation"] = Field("codebase"),
    ) -> IndexReport:
        """Chunk a repo by structure (Python defs/classes, Markdown sections, YAML plays and tasks) and embed
        it; a re-run embeds only changed files and drops deleted ones. Progress: chunks embedded."""

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await index_directory(vectors, path, collection, svc.index_roots, progress)

    @mcp.tool(annotations=READS)
    async def search_code(
        query: str = Field(description="What the code does, in plain language."),
        path_glob: str | None = Field(None, description="Only paths matching this glob, e.g. '*.yml' or 'roles/*'."),
        k: int = Field(5, description="How many, 1 to 50."),
    ) -> list[Hit]:
        """Indexed chunks (codebase and documentation) closest to the query, with path and lines."""
        if not 1 <= k <= 50:
            raise InvalidInput("k", f"must be within 1..50, got {k}")
        hits = await vectors.recall(query, Identity(), scopes=["shared"], k=50 if path_glob else k,
                                    filters={"kind": "chunk"}, collections=["codebase", "documentation"])
        if path_glob:
            hits = [h for h in hits if fnmatch(str(h.metadata.get("path", "")), path_glob)]
        return hits[:k]

    @mcp.tool(annotations=READS)
    async def collections() -> list[dict[str, Any]]:
        """Each collection: record count, embedding model, dimension, last index time."""
        return await vectors.collections()

    return mcp
