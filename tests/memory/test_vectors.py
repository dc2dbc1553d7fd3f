"""Vector memory and chat history on real ChromaDB, the real MiniLM model and real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from chiffon.servers.memory import history
from chiffon.servers.memory.embedders import LocalEmbedder
from chiffon.servers.memory.vectors import Identity, VectorMemory, open_client
from chiffon.shared.config import MemorySettings
from chiffon.shared.errors import EmbeddingMismatch, InvalidInput, NotFound
from chiffon.shared.runtime import Runtime


class OtherModel:
    """A different (real) embedding: MiniLM vectors truncated to 128 dimensions and renormalised."""

    name = "minilm-128"

    async def dimension(self) -> int:
        return 128

    async def embed(self, texts: list[str]) -> np.ndarray:
        v = (await LocalEmbedder().embed(texts))[:, :128]
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def memory(tmp_path: Path) -> VectorMemory:
    return VectorMemory(open_client(tmp_path, None), LocalEmbedder(), MemorySettings())


ALICE = Identity(session_id="s-alice", agent="developer", user_id="alice")
BOB = Identity(session_id="s-bob", agent="qa", user_id="bob")


async def test_recall_finds_the_right_memory_with_scores(memory: VectorMemory) -> None:
    await memory.remember("Uptime Kuma runs on east and monitors every portal", "shared", ALICE,
                          metadata={"source": "notes"})
    await memory.remember("PostgreSQL backups go to the NAS every night at 02:00", "shared", ALICE)
    hits = await memory.recall("where is the monitoring service?", BOB, k=2)
    assert hits[0].text.startswith("Uptime Kuma") and hits[0].score > hits[1].score
    assert hits[0].source == "notes" and hits[0].collection == "conversations"


async def test_a_session_never_sees_another_sessions_private_memories(memory: VectorMemory) -> None:
    async def write(who: Identity, n: int) -> None:
        for i in range(n):
            await memory.remember(f"{who.user_id} private note {i}: the deploy token rotates on day {i}", "session", who)

    await asyncio.gather(write(ALICE, 6), write(BOB, 6))  # concurrent writers
    alice = await memory.recall("deploy token rotation", ALICE, k=50)
    bob = await memory.recall("deploy token rotation", BOB, k=50)
    assert alice and all(h.metadata["session_id"] == "s-alice" for h in alice)
    assert bob and all(h.metadata["session_id"] == "s-bob" for h in bob)
    with pytest.raises(InvalidInput, match="session scope needs session_id"):
        await memory.recall("deploy token", Identity(agent="pm"), scopes=["session"])


async def test_near_duplicates_update_instead_of_adding(memory: VectorMemory) -> None:
    first = await memory.remember("The Redis server lives on the east host.", "shared", ALICE)
    again = await memory.remember("The Redis server lives on the east host!", "shared", ALICE)
    other = await memory.remember("Ollama serves qwen2.5 models on the ai host.", "shared", ALICE)
    assert first.action == "added" and again.action == "updated" and again.id == first.id
    assert again.similarity is not None and again.similarity >= 0.92
    assert other.action == "added"
    private = await memory.remember("The Redis server lives on the east host.", "session", ALICE)
    assert private.action == "added"  # same text, other scope: not a duplicate


async def test_another_embedding_model_is_refused_with_a_way_out(memory: VectorMemory, tmp_path: Path) -> None:
    await memory.remember("kuma monitors portals", "shared", ALICE, collection="documentation")
    other = VectorMemory(memory.client, OtherModel(), MemorySettings())
    with pytest.raises(EmbeddingMismatch, match="all-MiniLM-L6-v2.*minilm-128.*all=true"):
        await other.recall("kuma", ALICE, collections=["documentation"])
    assert await other.forget("documentation", everything=True) == 1
    assert (await other.remember("kuma monitors portals", "shared", ALICE, collection="documentation")).action == "added"


async def test_forget_and_collections(memory: VectorMemory) -> None:
    a = await memory.remember("alpha note about grafana dashboards", "agent", ALICE, metadata={"kind": "note"})
    await memory.remember("beta note about loki retention", "agent", ALICE, metadata={"kind": "note"})
    assert await memory.forget("conversations", ids=[a.id, "mem-missing"]) == 1
    assert await memory.forget("conversations", filters={"kind": "note"}) == 1
    listing = {c["name"]: c for c in await memory.collections()}
    assert listing["conversations"]["count"] == 0 and listing["conversations"]["dimension"] == 384
    assert listing["codebase"]["embedding_model"] is None


@pytest.mark.parametrize(("call", "field"), [
    (lambda m: m.remember("", "shared", ALICE), "text"),
    (lambda m: m.remember("x" * 20_001, "shared", ALICE), "text"),
    (lambda m: m.remember("ok", "team", ALICE), "scope"),
    (lambda m: m.remember("ok", "user", Identity()), "scope"),
    (lambda m: m.remember("ok", "shared", ALICE, collection="secrets"), "collection"),
    (lambda m: m.remember("ok", "shared", ALICE, metadata={"tags": ["a"]}), "metadata.tags"),
    (lambda m: m.recall("", ALICE), "query"),
    (lambda m: m.recall("ok", ALICE, k=0), "k"),
    (lambda m: m.recall("ok", ALICE, k=10_000), "k"),
    (lambda m: m.recall("ok", ALICE, scopes=["everyone"]), "scopes"),
    (lambda m: m.recall("ok", ALICE, filters={"colour": "red"}), "filters.colour"),
    (lambda m: m.recall("ok", ALICE, collections=["nope"]), "collection"),
    (lambda m: m.forget("conversations"), "ids"),
    (lambda m: m.forget("conversations", ids=["a"], everything=True), "ids"),
])
async def test_bad_input_is_refused_and_writes_nothing(memory: VectorMemory, call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as info:
        await call(memory)
    assert info.value.field == field
    assert all(c["count"] == 0 for c in await memory.collections())


async def test_chat_history_per_session_and_agent(rt: Runtime) -> None:
    await history.append_message(rt.store, "s-hist", "user", "deploy kuma please", user_id="alice")
    await history.append_message(rt.store, "s-hist", "assistant", "planned: deploy-uptime-kuma.yml", agent="planner",
                                 tool_calls=[{"name": "plan_request"}], tokens=12)
    msgs = await history.history(rt.store, "s-hist")
    assert [m.role for m in msgs] == ["user", "assistant"] and msgs[1].tool_calls == [{"name": "plan_request"}]
    assert [m.content for m in await history.history(rt.store, "s-hist", agent="planner")] == [
        "planned: deploy-uptime-kuma.yml"]
    assert len(await history.history(rt.store, "s-hist", limit=1)) == 1
    with pytest.raises(InvalidInput, match="role"):
        await history.append_message(rt.store, "s-hist", "robot", "beep")
    with pytest.raises(InvalidInput, match="content"):
        await history.append_message(rt.store, "s-hist", "user", "  ")
    with pytest.raises(InvalidInput, match="limit"):
        await history.history(rt.store, "s-hist", limit=0)
    with pytest.raises(NotFound):
        await history.history(rt.store, "s-nobody")
    # age only this session's messages, so the purge leaves other tests' history in the shared database alone
    await rt.store.pool.execute("UPDATE chat_messages SET at = at - interval '400 days' WHERE session_id = 's-hist'")
    await rt.store.pool.execute("UPDATE chat_sessions SET last_at = last_at - interval '400 days' WHERE id = 's-hist'")
    assert await history.purge(rt.store, 365) == 2
    with pytest.raises(NotFound):
        await history.history(rt.store, "s-hist")


async def test_recall_in_a_mostly_private_collection_falls_back_to_the_filtered_search(memory: VectorMemory) -> None:
    for i in range(30):
        await memory.remember(f"bob's backup job {i} copies the postgres dump to the NAS share {i}", "session", BOB)
    await memory.remember("alice: the postgres dump is copied to the NAS nightly", "session", ALICE)
    hits = await memory.recall("postgres dump copied to the NAS", ALICE, scopes=["session"], k=1)
    assert [h.metadata["session_id"] for h in hits] == ["s-alice"]


async def test_a_collection_recreated_elsewhere_is_looked_up_again(tmp_path: Path) -> None:
    client = open_client(tmp_path, None)
    server, other = (VectorMemory(client, LocalEmbedder(), MemorySettings()) for _ in range(2))
    await server.remember("old note about the NAS", "shared", ALICE)  # caches the collection handle
    assert await other.forget("conversations", everything=True) == 1  # drops and ...
    await other.remember("kuma listens on port 3001", "shared", BOB)  # ... re-creates it
    hits = await server.recall("which port does kuma use", ALICE, k=5)
    added = await server.remember("redis keeps an AOF every second", "shared", ALICE)
    assert [h.text for h in hits] == ["kuma listens on port 3001"] and added.action == "added"


async def test_nul_characters_from_model_output_are_stored_replaced(rt: Runtime) -> None:
    stored = await history.append_message(rt.store, "s-nul", "assistant", "ok\x00done")
    assert stored.content == "ok\ufffddone"
    with pytest.raises(InvalidInput, match="content"):
        await history.append_message(rt.store, "s-nul", "assistant", "\x00\x00")
