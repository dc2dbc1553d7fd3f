"""``chiffon serve`` over stdio answers before it is built: ``tools/list`` from declarations.

An IDE starts ``chiffon serve`` for each window and waits for its first ``tools/list`` before the model can use
any tool. Composing the server (PostgreSQL, Redis, the services, every tool's schema) takes a second or more;
the answer does not depend on any of it. :func:`serve_stdio_declared` answers ``initialize`` at once and
``tools/list`` from the answer the composed server gave at an earlier start (stored under
``CHIFFON_HOME/cache``, keyed by :func:`declarations_key`), while it composes; every other request waits for
the composed server and is handled by that server's own handler. What a client is told is checked against the
composed server each time; when it differs, the declarations are replaced and the client is told the list
changed. Measured in ``benchmarks/startup.py`` (``serve_vs_bare``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fastmcp import FastMCP

from chiffon.shared import metrics

log = logging.getLogger(__name__)

DECLARED_AFTER_ANSWER_S = 0.5
"""How long after a ``tools/list`` answered from declarations :func:`serve_stdio_declared` starts composing the
real server (when no call asked for it sooner): the answer reaches the client before imports take the CPU."""
DECLARED_START_AT_LATEST_S = 2.0
"""When composing starts whatever the client asks (its in-process workers run whether or not a client calls)."""


def declarations_key(*parts: object) -> str:
    """A digest of what decides a server's tool list: ``parts`` (toolsets, repo, settings), chiffon's source
    files (path, size, mtime: the docstrings and signatures are the declarations) and the MCP libraries'
    versions. A declaration file written under another key is never answered from."""
    import hashlib
    import os

    import fastmcp
    import pydantic

    digest = hashlib.sha256(repr((parts, fastmcp.__version__, pydantic.VERSION, sys.version)).encode())
    import chiffon

    # the package's folders wherever its search path finds them (installed: inside chiffon/; a checkout: its root)
    folders = [Path(entry) / name for entry in chiffon.__path__ for name in ("servers", "orchestrator", "shared",
                                                                           "prompts")]
    for folder in folders:
        for top, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                st = os.stat(os.path.join(top, name))
                digest.update(f"{top}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_declarations(path: Path, key: str) -> dict[str, Any] | None:
    """The ``tools/list`` answer stored in ``path`` under ``key``; None when there is none, it is unreadable,
    or it was written under another key."""
    import json

    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stored.get("tools_list") if isinstance(stored, dict) and stored.get("key") == key else None


def write_declarations(path: Path, key: str, tools_list: dict[str, Any]) -> None:
    """Store the ``tools/list`` answer (its wire form) under ``key``, replacing the file atomically; a failure
    is logged, never raised (the next start composes first, as without declarations)."""
    import json
    import os

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "tools_list": tools_list}))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("tool declarations not stored in %s: %s", path, exc)


class _Declared:
    """The request handlers of :func:`serve_stdio_declared`: answer ``tools/list`` from the declarations until
    the real server is composed; hand every other request (and ``tools/list`` without declarations) to the
    real server's own handler once it is."""

    def __init__(self, compose: Callable[[], AbstractAsyncContextManager[FastMCP]], path: Path, key: str) -> None:
        self.compose, self.path, self.key = compose, path, key
        self.declared = read_declarations(path, key)
        self.real: asyncio.Future[FastMCP] = asyncio.get_running_loop().create_future()
        self.go = asyncio.Event()
        self.answered: Any = None  # the context of a tools/list answered from the declarations
        self.recorded = False

    def handler(self, method: str) -> Callable[[Any, Any], Awaitable[Any]]:
        async def handle(ctx: Any, params: Any) -> Any:
            if method == "tools/list" and self.declared is not None and not self.real.done() \
                    and getattr(params, "cursor", None) is None:
                self.answered = ctx
                asyncio.get_running_loop().call_later(DECLARED_AFTER_ANSWER_S, self.go.set)
                return dict(self.declared)
            self.go.set()
            real = await asyncio.shield(self.real)
            entry = real._mcp_server.get_request_handler(method)
            if entry is None:  # pragma: no cover - the same FastMCP registers the same methods
                raise RuntimeError(f"{real.name} has no handler for {method}")
            result = await entry.handler(ctx, params)
            if method == "tools/list" and not self.recorded and getattr(params, "cursor", None) is None:
                await self.record(result)
            return result

        return handle

    async def record(self, result: Any) -> None:
        """Store what the real server answers to tools/list; when clients were answered something else from
        stale declarations, tell them the list changed."""
        from mcp_types import ListToolsResult

        self.recorded = True
        wire = result.model_dump(by_alias=True, mode="json", exclude_none=True) \
            if isinstance(result, ListToolsResult) else dict(result)
        if wire == self.declared:
            return
        write_declarations(self.path, self.key, wire)
        if self.declared is not None and self.answered is not None:
            log.info("tool declarations in %s were stale; clients are told the tool list changed", self.path)
            await self.answered.session.send_tool_list_changed()

    async def composing(self) -> None:
        await self.go.wait()
        try:
            async with self.compose() as real:
                self.real.set_result(real)
                if self.answered is not None and not self.recorded:  # check what was answered from declarations
                    entry = real._mcp_server.get_request_handler("tools/list")
                    await self.record(await entry.handler(self.answered, entry.params_type()))  # type: ignore[union-attr]
                await asyncio.Event().wait()  # open until the client goes
        except BaseException as exc:
            if not self.real.done() and isinstance(exc, asyncio.CancelledError):
                self.real.cancel()
            elif not self.real.done():
                self.real.set_exception(exc)
                self.real.exception()  # retrieved: the requests waiting on it get it, and so does serve
            raise


async def serve_stdio_declared(front: FastMCP, compose: Callable[[], AbstractAsyncContextManager[FastMCP]],
                               declarations: Path, key: str) -> None:
    """Serve over stdio the server that ``compose()`` opens, answering ``initialize`` at once and ``tools/list``
    from ``declarations`` (the answer the real server gave at an earlier start under the same ``key``, see
    :func:`declarations_key`) while it is being composed.

    ``front`` is an empty FastMCP server with the real one's name and instructions (the ``initialize`` answer);
    each of its request handlers waits for the real server and calls the real server's own handler with the
    same request context, so calls behave as if the real server were served. Without declarations (first start,
    or anything in the key changed) composing starts at once and ``tools/list`` waits for it, as ``serve`` does;
    with them, composing starts when a request needs the real server, :data:`DECLARED_AFTER_ANSWER_S` after
    the declared answer, or :data:`DECLARED_START_AT_LATEST_S` after the start, whichever comes first. The real server's ``tools/list`` answer is stored in ``declarations`` and, when it
    differs from what was declared, the client gets ``notifications/tools/list_changed``.

    Returns when the client goes (the real server is closed); raises what composing raised (after serving stops).
    """
    declared = _Declared(compose, declarations, key)
    lowlevel = front._mcp_server
    for method in ("tools/list", "tools/call", "resources/list", "resources/templates/list", "resources/read",
                   "prompts/list", "prompts/get", "logging/setLevel", "completion/complete"):
        entry = lowlevel.get_request_handler(method)
        if entry is not None:
            lowlevel.add_request_handler(method, entry.params_type, declared.handler(method))
    if declared.declared is None:
        declared.go.set()
    else:
        asyncio.get_running_loop().call_later(DECLARED_START_AT_LATEST_S, declared.go.set)
    metrics.mark_started(front.name)
    serving = asyncio.ensure_future(front.run_async("stdio", show_banner=False))
    composing = asyncio.ensure_future(declared.composing())
    try:
        await asyncio.wait({serving, composing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (serving, composing):
            task.cancel()
        results = await asyncio.gather(serving, composing, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
