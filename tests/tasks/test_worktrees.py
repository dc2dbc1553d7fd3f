"""Agents' worktrees: many tasks on one repo at once."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from chiffon.servers.tasks.repo import Workspaces
from tests.conftest import git_commit_all


def test_concurrent_tasks_on_one_repo_each_get_a_worktree(tmp_path: Path) -> None:
    # Unserialised, about 1 in 10 of these failed: "failed to read .git/worktrees/<other>/commondir".
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "notes.md").write_text("# notes\n")
    git_commit_all(repo)
    workspaces = Workspaces(tmp_path / "worktrees")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        made = list(pool.map(lambda i: workspaces.create(f"task-{i:03d}", repo), range(40)))
    assert len({w.path for w in made}) == 40
    assert all((Path(w.path) / "notes.md").is_file() for w in made)
    assert workspaces.files("task-007") == ["notes.md"]
