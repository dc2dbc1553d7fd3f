"""index_repo on real files: structure chunks, incremental re-index, skips, refusals; the CLI with its bar."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chiffon.servers.memory.embedders import LocalEmbedder
from chiffon.servers.memory.indexer import blob_hash, index_directory
from chiffon.servers.memory.vectors import Identity, VectorMemory, open_client
from chiffon.shared.config import MemorySettings
from chiffon.shared.errors import InvalidInput, PathOutsideRepo
from tests.conftest import CHECKOUT, EXAMPLE

BIN = Path(sys.executable).parent
PY = '''"""Disk helpers."""


def free_space(path):
    """Bytes free on the filesystem holding path."""
    import shutil
    return shutil.disk_usage(path).free


class Janitor:
    def prune(self):
        return "docker image prune"
'''
MD = "# Runbook\n\nIntro.\n\n## Restore postgres\n\nRun pg_restore from the NAS copy.\n\n## Rotate logs\n\nlogrotate daily.\n"


@pytest.fixture
def memory(tmp_path: Path) -> VectorMemory:
    return VectorMemory(open_client(tmp_path / "home", None), LocalEmbedder(), MemorySettings())


def test_blob_hash_is_gits(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("hello\n")
    git = subprocess.run(["git", "hash-object", str(tmp_path / "f.txt")], capture_output=True, text=True, check=True)
    assert blob_hash(b"hello\n") == git.stdout.strip()


async def test_incremental_reindex_after_edit_add_delete(memory: VectorMemory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "disk.py").write_text(PY)
    (src / "runbook.md").write_text(MD)
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x00\x00binary")
    (src / "blob.txt").write_bytes(b"text\x00with a NUL")
    (src / "huge.txt").write_text("x" * 1_000_001)
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total))

    first = await index_directory(memory, src, "codebase", [tmp_path], progress)
    assert (first.files_indexed, first.chunks_added) == (2, 6)  # module doc, def, class + 3 sections
    assert sorted(s.split(":")[0] for s in first.skipped) == ["blob.txt", "huge.txt"]  # .png is not indexed at all
    assert seen and seen[-1][0] == seen[-1][1] == 6
    hits = await memory.recall("how do I restore the database?", Identity(), collections=["codebase"], k=1)
    assert hits[0].metadata["title"] == "Restore postgres" and hits[0].metadata["start_line"] == 5

    again = await index_directory(memory, src, "codebase", [tmp_path])
    assert (again.files_indexed, again.files_unchanged, again.chunks_added) == (0, 2, 0)

    (src / "runbook.md").write_text(MD + "\n## Renew certificates\n\ncertbot renew.\n")
    (src / "disk.py").unlink()
    (src / "deploy.yml").write_text("- name: Deploy Redis\n  hosts: east\n  tasks:\n    - name: Start Redis\n"
                                    "      ansible.builtin.command: docker compose up -d\n")
    third = await index_directory(memory, src, "codebase", [tmp_path])
    assert (third.files_indexed, third.files_unchanged, third.files_deleted) == (2, 0, 1)
    assert third.chunks_deleted == 6 and third.chunks_added == 4 + 2  # 4 sections; a play and a task
    paths = {h.metadata["path"] for h in await memory.recall("anything", Identity(), collections=["codebase"], k=50)}
    assert paths == {"runbook.md", "deploy.yml"}
    listing = {c["name"]: c for c in await memory.collections()}
    assert listing["codebase"]["count"] == 6 and listing["codebase"]["last_index"]


async def test_refusals(memory: VectorMemory, tmp_path: Path) -> None:
    with pytest.raises(PathOutsideRepo, match="index_roots"):
        await index_directory(memory, "/etc", "codebase", [tmp_path])
    with pytest.raises(InvalidInput, match="not a directory"):
        await index_directory(memory, tmp_path / "missing", "codebase", [tmp_path])
    with pytest.raises(InvalidInput, match="codebase or documentation"):
        await index_directory(memory, tmp_path, "conversations", [tmp_path])


def test_cli_indexes_the_example_repo(cli_env: dict[str, str]) -> None:
    proc = subprocess.run([str(BIN / "chiffon"), "memory", "index", str(EXAMPLE), "--collection", "documentation",
                           "--json"], env=cli_env, capture_output=True, text=True, timeout=600, cwd=CHECKOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["files_indexed"] >= 10 and report["chunks_added"] >= 20 and report["skipped"] == []
    outside = subprocess.run([str(BIN / "chiffon"), "memory", "index", "/etc"], env=cli_env, capture_output=True,
                             text=True, timeout=120, cwd=CHECKOUT)
    assert outside.returncode == 2 and "outside the allowed roots" in outside.stderr
