"""Playbook matching by words alone against words + meaning, on the labelled homelab set.

Writes the catalog of ``tests/fixtures/playbook_requests.yaml`` (16 playbooks) as a
git repo, indexes its cards into ``documentation`` with the local MiniLM, then
ranks each labelled request (32 that name a playbook, 6 off-topic ones that must
be refused) with :func:`servers.ansible.matching.rank` and with
:func:`~servers.ansible.matching.blend` at several weights. Also times one
request both ways, so ``added_ms_p50`` is what meaning costs per plan.

Prints one JSON line: ``{"requests", "off_topic", "words_top1", "blended_top1",
"words_refused", "blended_refused", "by_weight", "words_ms_p50", "blended_ms_p50",
"added_ms_p50"}``. Target: blended_top1 >= 0.9 with every off-topic request refused.

    uv run python benchmarks/playbook_matching.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.orchestrator.playbook_memory import PlaybookIndex  # noqa: E402
from chiffon.servers.ansible import matching  # noqa: E402
from chiffon.servers.ansible.catalog import Catalog  # noqa: E402
from chiffon.servers.memory.embedders import LocalEmbedder  # noqa: E402
from chiffon.servers.memory.vectors import VectorMemory, open_client  # noqa: E402
from chiffon.shared.config import MemorySettings  # noqa: E402
from tests.fixtures.playbooks import INVENTORY, labelled_requests, write_labelled_repo  # noqa: E402

TARGET_TOP1 = 0.9
WEIGHTS = (0.3, 0.5, 0.7, 1.0)


def score(ranked_by_request: list[tuple[str | None, list[matching.Match]]]) -> tuple[int, int]:
    """(right first choices above MIN_SCORE, off-topic requests refused)."""
    right = sum(1 for want, ranked in ranked_by_request
                if want and ranked[0].playbook.name == want and ranked[0].score >= matching.MIN_SCORE)
    refused = sum(1 for want, ranked in ranked_by_request if want is None and ranked[0].score < matching.MIN_SCORE)
    return right, refused


async def main() -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="chiffon-match-"))
    catalog = Catalog.load(write_labelled_repo(work / "repo"), INVENTORY)
    index = PlaybookIndex(VectorMemory(open_client(work, None), LocalEmbedder(), MemorySettings()))
    await index.sync(catalog)
    labelled = labelled_requests()
    similar = [await index.similarities(catalog, text) for text, _ in labelled]
    words = [(want, matching.rank(catalog, text)) for text, want in labelled]
    by_weight = {}
    for weight in WEIGHTS:
        blended = [(want, matching.blend(ranked, sims, weight)) for (want, ranked), sims in zip(words, similar, strict=True)]
        by_weight[str(weight)] = dict(zip(("top1", "refused"), score(blended), strict=True))
    words_ms, blended_ms = [], []
    for text, _ in labelled * 3:
        started = time.perf_counter()
        matching.rank(catalog, text)
        words_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        matching.blend(matching.rank(catalog, text), await index.similarities(catalog, text))
        blended_ms.append((time.perf_counter() - started) * 1000)
    named = sum(1 for _, want in labelled if want)
    words_right, words_refused = score(words)
    chosen = by_weight[str(matching.SEMANTIC_WEIGHT)]
    return {
        "requests": named, "off_topic": len(labelled) - named,
        "words_top1": round(words_right / named, 3), "blended_top1": round(chosen["top1"] / named, 3),
        "words_refused": words_refused, "blended_refused": chosen["refused"], "weight": matching.SEMANTIC_WEIGHT,
        "by_weight": by_weight,
        "words_ms_p50": round(statistics.median(words_ms), 2), "blended_ms_p50": round(statistics.median(blended_ms), 2),
        "added_ms_p50": round(statistics.median(blended_ms) - statistics.median(words_ms), 2),
        "target_met": chosen["top1"] / named >= TARGET_TOP1 and chosen["refused"] == len(labelled) - named,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
