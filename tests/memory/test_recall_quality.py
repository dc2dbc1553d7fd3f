"""Recall quality on a labelled set: homelab questions -> the file that answers them, in the top 3.

The corpus is the example IaC repo indexed into ``documentation`` with the real MiniLM model.
Target (issue 4): at least 90% of the questions find their file in the top 3.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from chiffon.servers.memory.embedders import LocalEmbedder
from chiffon.servers.memory.indexer import index_directory
from chiffon.servers.memory.vectors import Identity, VectorMemory, open_client
from chiffon.shared.config import MemorySettings
from tests.conftest import EXAMPLE

LABELLED = [
    ("How do I back up the postgres databases?", "backup-postgres.yml"),
    ("Where are old database dumps deleted after the retention period?", "backup-postgres.yml"),
    ("free up disk space on the servers", "cleanup-disk.yml"),
    ("remove unused docker images", "cleanup-disk.yml"),
    ("install a redis cache", "deploy-redis.yml"),
    ("what memory limit and persistence does redis use?", "templates/redis/redis.conf.j2"),
    ("set up uptime monitoring for my web portals", "deploy-uptime-kuma.yml"),
    ("which portals exist in the homelab and their URLs?", "group_vars/all.yml"),
    ("what port does the uptime kuma container publish?", "templates/uptime-kuma/compose.yaml.j2"),
    ("which hosts are in the homelab inventory?", "inventories/homelab.ini"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def indexed(tmp_path_factory: pytest.TempPathFactory) -> VectorMemory:
    memory = VectorMemory(open_client(tmp_path_factory.mktemp("recall"), None), LocalEmbedder(), MemorySettings())
    await index_directory(memory, EXAMPLE, "documentation", [EXAMPLE])
    return memory


async def test_top3_recall_on_the_labelled_set(indexed: VectorMemory) -> None:
    misses = []
    for question, expected in LABELLED:
        hits = await indexed.recall(question, Identity(), collections=["documentation"], k=3)
        paths = [h.metadata["path"] for h in hits]
        if expected not in paths:
            misses.append(f"{question!r}: wanted {expected}, got {paths}")
    assert len(misses) <= len(LABELLED) // 10, "\n".join(misses)
