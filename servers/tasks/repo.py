"""Repo tools for agents: each task works in its own git worktree branch of the target repo.

:class:`Workspaces` makes ``CHIFFON_HOME/worktrees/<task_id>`` with ``git worktree
add -b chiffon/<task_id>`` from the target repo's HEAD, so an agent's edits never
touch the checkout the human works in; the branch stays for review after the task.
The tools take a hidden ``task_id`` that the dispatcher (:mod:`servers.tasks.tools`)
fills in with the calling agent's task: the model never chooses which worktree.

``repo_run_tests`` runs the task's test command: one of its role's ``test_commands``
(:func:`servers.tasks.roles.allowed_test_command`), chosen by the submitter, never one the
model writes. It runs without a shell, under ``tasks.test_timeout_s``, inside the
bubblewrap sandbox of :mod:`.sandbox` (no network, no chiffon state, no credentials).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from fastmcp import FastMCP
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from chiffon.servers.tasks.sandbox import jail
from chiffon.shared.errors import InvalidInput, NotFound, RepoError
from chiffon.shared.mcp import ChiffonErrors
from chiffon.shared.paths import resolve_in_repo

READS = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
WRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)
RUNS = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
MAX_READ_BYTES = 200_000
MAX_WRITE_CHARS = 200_000
MAX_LIST = 500
OUTPUT_TAIL = 4000


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RepoError(f"git {' '.join(args)} in {cwd} failed: {done.stderr.strip()[:500]}")
    return done.stdout


class Workspace(BaseModel):
    """One task's worktree."""

    task_id: str
    repo: str = Field(description="The target repo (its main checkout).")
    path: str = Field(description="The worktree directory.")
    branch: str
    base_commit: str
    test_command: str | None = Field(description="What repo_run_tests runs; None: the task's role runs no tests.")


MAX_PATH_CHOICES = 256  # up to this many files, the path of repo_read_file is an enum in the agent's grammar


class Workspaces:
    """Worktrees by task id, under ``root`` (``CHIFFON_HOME/worktrees``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[str, Workspace] = {}

    def create(self, task_id: str, repo: Path, test_command: str | None = None) -> Workspace:
        """Add (or reopen) the worktree of ``task_id`` on branch ``chiffon/<task_id>``.

        ``test_command`` must already be allowed for the task's role (the team resolves it); None: no tests.

        Raises:
            RepoError: ``repo`` is not a git repository with a commit.
        """
        repo = repo.expanduser().resolve()
        if not (repo / ".git").exists():
            raise RepoError(f"{repo} is not a git repository; agents work in a worktree branch of one")
        path = self.root / task_id
        branch = f"chiffon/{task_id}"
        if not path.exists():
            # Concurrent `git worktree add` on one repo fail ("failed to read .git/worktrees/<other>/commondir"):
            # one at a time per repo, across the workers of this CHIFFON_HOME.
            from filelock import FileLock

            locks = self.root / ".locks"
            locks.mkdir(parents=True, exist_ok=True)
            with FileLock(str(locks / f"{hashlib.sha256(str(repo).encode()).hexdigest()[:16]}.lock")):
                existing = _git(repo, "branch", "--list", branch).strip()
                _git(repo, "worktree", "add", *([] if existing else ["-b", branch]), str(path),
                     *([branch] if existing else ["HEAD"]))
        base = _git(repo, "rev-parse", "HEAD").strip()
        ws = Workspace(task_id=task_id, repo=str(repo), path=str(path), branch=branch, base_commit=base,
                       test_command=test_command)
        self._open[task_id] = ws
        return ws

    def files(self, task_id: str, limit: int = MAX_PATH_CHOICES) -> list[str] | None:
        """The worktree's files (tracked and new, not ignored), sorted; None when there are more than ``limit``
        (or no worktree): then a path stays free text in the agent's grammar."""
        if task_id not in self._open:
            return None
        listed = _git(Path(self._open[task_id].path), "ls-files", "-co", "--exclude-standard").splitlines()
        return sorted(set(listed)) if 0 < len(listed) <= limit else None

    def get(self, task_id: str) -> Workspace:
        """The open worktree of ``task_id``. Raises NotFound."""
        if task_id not in self._open:
            raise NotFound(f"task {task_id} has no worktree (the task names no repo)")
        return self._open[task_id]

    def commit(self, task_id: str, message: str) -> str | None:
        """Commit everything changed in the worktree; the new commit, or None when nothing changed."""
        ws = self.get(task_id)
        path = Path(ws.path)
        _git(path, "add", "-A")
        if not _git(path, "status", "--porcelain").strip():
            return None
        _git(path, "-c", "user.name=chiffon", "-c", "user.email=chiffon@localhost", "commit", "-q", "-m", message)
        return _git(path, "rev-parse", "HEAD").strip()

    def diff(self, task_id: str, limit: int = 20_000) -> str:
        """The worktree's changes against its base commit (committed and not), truncated to ``limit`` chars."""
        ws = self.get(task_id)
        _git(Path(ws.path), "add", "-A")
        return _git(Path(ws.path), "diff", "--cached", ws.base_commit)[:limit]


class TestReport(BaseModel):
    """What repo_run_tests saw."""

    command: str
    exit_code: int | None = Field(description="None when the command timed out.")
    passed: bool
    output_tail: str = Field(description=f"Last {OUTPUT_TAIL} characters of stdout and stderr.")
    duration_s: float


def create_repo_server(workspaces: Workspaces, test_timeout_s: float = 600.0, *, sandbox: str = "bwrap",
                       hidden: list[Path] | None = None) -> FastMCP:
    """``repo_*`` tools over the task's worktree (mount it under the namespace ``repo``).

    ``sandbox``/``hidden``: how ``run_tests`` jails the test command (:func:`.sandbox.jail`).
    """
    mcp = FastMCP("chiffon-repo", instructions="Read, search and change files in your task's worktree; run its tests.",
                  mask_error_details=True)
    mcp.add_middleware(ChiffonErrors())
    task_field = Field(description="Filled in by chiffon with the calling agent's task.")

    def root(task_id: str) -> Path:
        return Path(workspaces.get(task_id).path)

    @mcp.tool(annotations=READS)
    def list_files(task_id: str = task_field,
                   pattern: str = Field("**/*", description="Glob relative to the repo root, e.g. '*.yml'.")) -> list[str]:
        """Files in the worktree matching ``pattern`` (at most 500, sorted; .git excluded)."""
        base = root(task_id)
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise InvalidInput("pattern", "must be a glob relative to the repo root")
        found = sorted(str(p.relative_to(base)) for p in base.glob(pattern)
                       if p.is_file() and ".git" not in p.relative_to(base).parts)
        return found[:MAX_LIST]

    @mcp.tool(annotations=READS)
    def read_file(task_id: str = task_field, path: str = Field(description="Path relative to the repo root.")) -> str:
        """The file's text (first 200 kB)."""
        target = resolve_in_repo(root(task_id), path, "path")
        if not target.is_file():
            raise NotFound(f"{path} is not a file in the worktree")
        return target.read_bytes()[:MAX_READ_BYTES].decode("utf-8", errors="replace")

    @mcp.tool(annotations=READS)
    def search(task_id: str = task_field, pattern: str = Field(description="Regular expression (Python syntax)."),
               path_glob: str = Field("**/*", description="Only files matching this glob.")) -> list[dict[str, Any]]:
        """Lines matching ``pattern``: ``[{path, line, text}]``, at most 200."""
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise InvalidInput("pattern", f"not a valid regular expression: {exc}") from exc
        hits: list[dict[str, Any]] = []
        for rel in list_files(task_id, path_glob):
            text = (root(task_id) / rel).read_bytes()[:MAX_READ_BYTES].decode("utf-8", errors="replace")
            for n, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    hits.append({"path": rel, "line": n, "text": line[:300]})
                    if len(hits) >= 200:
                        return hits
        return hits

    @mcp.tool(annotations=WRITES)
    def write_file(task_id: str = task_field, path: str = Field(description="Path relative to the repo root."),
                   content: str = Field(description="The whole new content of the file.")) -> dict[str, Any]:
        """Create or replace a file in the worktree (never outside it, never under .git)."""
        if len(content) > MAX_WRITE_CHARS:
            raise InvalidInput("content", f"{len(content)} characters; at most {MAX_WRITE_CHARS}")
        target = resolve_in_repo(root(task_id), path, "path")
        if ".git" in target.relative_to(root(task_id).resolve()).parts:
            raise InvalidInput("path", "files under .git cannot be written")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return {"path": path, "bytes": len(content.encode())}

    @mcp.tool(annotations=RUNS)
    async def run_tests(task_id: str = task_field) -> TestReport:
        """Run the task's test command (one its role allows, chosen by whoever submitted the task) in the
        worktree, sandboxed: no network, no chiffon state or secrets, an environment without credentials. The
        tests may write in the worktree.

        Raises:
            NotFound: the task has no worktree. InvalidInput: the task's role runs no tests.
        """
        ws = workspaces.get(task_id)
        if ws.test_command is None:
            raise InvalidInput("task_id", f"task {task_id}'s role has no test_commands, so it runs no tests")
        argv, env = jail(shlex.split(ws.test_command), Path(ws.path), mode=sandbox, hidden=hidden or [])
        loop = asyncio.get_running_loop()
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(*argv, cwd=ws.path, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), test_timeout_s)
            code: int | None = proc.returncode
        except TimeoutError:
            proc.kill()
            output, code = (await proc.communicate())[0] + f"\n[timed out after {test_timeout_s:g} s]".encode(), None
        text = output.decode("utf-8", errors="replace")
        return TestReport(command=ws.test_command, exit_code=code, passed=code == 0, output_tail=text[-OUTPUT_TAIL:],
                          duration_s=round(loop.time() - started, 2))

    return mcp
