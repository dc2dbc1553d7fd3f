"""Recall through chiffon against the same query straight on ChromaDB; full and incremental indexing.

A deterministic synthetic corpus (``--files`` Markdown files x ``--sections`` sections,
20,000 chunks by default, seeded vocabulary of homelab terms) is indexed into
``documentation`` with the local MiniLM embedder. Then ``--queries`` queries run
alternately through

* chiffon: :meth:`VectorMemory.recall` (validation, scope filter, model check, hits with sources);
* chroma: the query embedded with the same model, then ``collection.query`` directly.

Both embed the query text, so ``ratio = chiffon_p95_ms / chroma_p95_ms`` measures chiffon's own
work. Then one file is edited and the directory re-indexed:
``incremental_ratio = re-index seconds / full index seconds``.
Prints one JSON line. Targets: ratio <= 1.25, incremental_ratio <= 0.05.

    uv run python benchmarks/memory_recall.py [--files 500 --sections 40 --queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.memory.embedders import LocalEmbedder  # noqa: E402
from chiffon.servers.memory.indexer import index_directory  # noqa: E402
from chiffon.servers.memory.vectors import Identity, VectorMemory, open_client  # noqa: E402
from chiffon.shared.config import MemorySettings  # noqa: E402

TARGET_RATIO = 1.25
TARGET_INCREMENTAL = 0.05
SERVICES = ["redis", "postgres", "uptime kuma", "grafana", "loki", "traefik", "portainer", "n8n", "ollama", "proxmox",
            "unraid", "home assistant", "nextcloud", "jellyfin", "pihole", "wireguard"]
ACTIONS = ["deploy", "back up", "restore", "upgrade", "monitor", "rotate the logs of", "scale", "migrate",
           "harden", "debug", "restart", "configure TLS for"]
HOSTS = ["ai", "desktop", "east", "nas", "proxmox"]
DETAILS = ["the compose file pins the image tag", "volumes live under /srv", "the health check polls every 30 s",
           "secrets come from the vault", "retention is seven days", "alerts go to the ops channel",
           "the firewall opens only the web port", "backups land on the NAS at night"]


def write_corpus(root: Path, files: int, sections: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for f in range(files):
        lines = [f"# Runbook {f}", ""]
        for s in range(sections):
            service, action, host = rng.choice(SERVICES), rng.choice(ACTIONS), rng.choice(HOSTS)
            lines += [f"## {action.capitalize()} {service} on {host} ({f}.{s})", "",
                      f"To {action} {service} on the {host} host: {rng.choice(DETAILS)}; {rng.choice(DETAILS)}.", ""]
        (root / f"runbook-{f:04d}.md").write_text("\n".join(lines))


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


async def bench(files: int, sections: int, queries: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="chiffon-memory-bench-") as tmp:
        corpus, home = Path(tmp) / "corpus", Path(tmp) / "home"
        corpus.mkdir()
        write_corpus(corpus, files, sections)
        embedder = LocalEmbedder()
        memory = VectorMemory(open_client(home, None), embedder, MemorySettings())
        started = time.perf_counter()
        report = await index_directory(memory, corpus, "documentation", [corpus])
        full_s = time.perf_counter() - started
        col = await memory.collection("documentation")

        rng = random.Random(11)
        asks = [f"how do I {rng.choice(ACTIONS)} {rng.choice(SERVICES)} on {rng.choice(HOSTS)}?" for _ in range(queries)]
        chiffon_ms: list[float] = []
        chroma_ms: list[float] = []
        for q in asks[:10]:  # warm-up
            await memory.recall(q, Identity(), collections=["documentation"], k=5)
        for q in asks:
            t = time.perf_counter()
            await memory.recall(q, Identity(), collections=["documentation"], k=5)
            chiffon_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            vector = (await embedder.embed([q]))[0].tolist()
            await asyncio.to_thread(col.query, query_embeddings=[vector], n_results=5,
                                    include=["documents", "metadatas", "distances"])
            chroma_ms.append((time.perf_counter() - t) * 1000)

        edited = corpus / "runbook-0000.md"
        edited.write_text(edited.read_text().replace("Runbook 0", "Runbook 0 (edited)"))
        started = time.perf_counter()
        again = await index_directory(memory, corpus, "documentation", [corpus])
        incremental_s = time.perf_counter() - started
        assert again.files_indexed == 1, again

    return {
        "chunks": report.chunks_added,
        "chiffon_p50_ms": round(statistics.median(chiffon_ms), 2), "chiffon_p95_ms": round(p95(chiffon_ms), 2),
        "chroma_p50_ms": round(statistics.median(chroma_ms), 2), "chroma_p95_ms": round(p95(chroma_ms), 2),
        "ratio": round(p95(chiffon_ms) / p95(chroma_ms), 3),
        "index_s": round(full_s, 1), "index_chunks_per_s": round(report.chunks_added / full_s, 1),
        "reindex_s": round(incremental_s, 2), "incremental_ratio": round(incremental_s / full_s, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--sections", type=int, default=40)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(bench(args.files, args.sections, args.queries))
    result.update(target_ratio=TARGET_RATIO, target_incremental_ratio=TARGET_INCREMENTAL,
                  meets_targets=result["ratio"] <= TARGET_RATIO and result["incremental_ratio"] <= TARGET_INCREMENTAL)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
