"""Where agents' tool calls are dispatched, and where role scopes are enforced.

An agent never holds an MCP client of its own: it asks :class:`ScopedTools`,
which lists only the tools its role's scopes grant and refuses any other call
before it reaches a server (the refusal is a step of the task and an audit
record). The hidden identity arguments are set here, not by the model:
``task_id`` of the repo tools is the agent's task, and the memory tools'
``session_id``/``agent`` are the task's session and the role, so an agent can
neither read another session's memory nor write into it.

Tools that change a machine (``infra.run``) keep their own human approval:
``execute_plan`` answers "awaiting approval" to an agent, whatever its role.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from fastmcp import Client, FastMCP
from mcp_types import Tool

from chiffon.servers.tasks.roles import Role
from chiffon.shared.audit import AuditLog

HIDDEN = {"task_id", "session_id", "agent", "user_id", "role"}  # filled in by the dispatcher
_MEMORY_SESSION_TOOLS = {"memory_remember", "memory_recall", "memory_append_message", "memory_history"}


@dataclass(frozen=True)
class ToolOutcome:
    """A tool call's result as the agent sees it."""

    ok: bool
    text: str
    denied: bool = False


def _text(result: Any) -> str:
    if result.structured_content is not None:
        data = result.structured_content
        return json.dumps(data.get("result", data) if isinstance(data, dict) and set(data) == {"result"} else data,
                          default=str)
    return "\n".join(getattr(c, "text", str(c)) for c in result.content)


class Toolbox:
    """One in-process MCP client over the agents' tool server, shared by every agent of a worker."""

    def __init__(self, server: FastMCP) -> None:
        self.server = server
        self._client: Client | None = None
        self._tools: dict[str, Tool] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> Toolbox:
        """Connect and list the tools once."""
        self._client = Client(self.server, mode="legacy")
        await self._client.__aenter__()
        self._tools = {t.name: t for t in await self._client.list_tools()}
        return self

    async def aclose(self) -> None:
        """Disconnect."""
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None

    @property
    def tools(self) -> dict[str, Tool]:
        """Every tool the server has, by name."""
        return self._tools

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call a tool with no scope check (the caller is :class:`ScopedTools`)."""
        assert self._client is not None, "Toolbox.start() first"
        result = await self._client.call_tool(name, arguments, raise_on_error=False)
        return ToolOutcome(ok=not result.is_error, text=_text(result))


class ScopedTools:
    """The tools one agent of ``role`` working on ``task_id`` (session ``session_id``) may see and call."""

    def __init__(self, toolbox: Toolbox, role: Role, task_id: str, session_id: str, audit: AuditLog) -> None:
        self.toolbox = toolbox
        self.role = role
        self.task_id = task_id
        self.session_id = session_id
        self.audit = audit

    def visible(self) -> dict[str, Tool]:
        """The tools this role's scopes grant, by name."""
        return {n: t for n, t in self.toolbox.tools.items() if self.role.allows(n)}

    def schema_for(self, name: str) -> dict[str, Any]:
        """The tool's input schema without the hidden identity arguments."""
        schema = dict(self.toolbox.tools[name].input_schema)
        props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in HIDDEN}
        required = [r for r in schema.get("required") or [] if r not in HIDDEN]
        return {**schema, "properties": props, "required": required}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Dispatch one call: refuse tools outside the role's scopes, fill in the hidden arguments, call."""
        if not isinstance(arguments, dict):
            return ToolOutcome(False, "arguments must be a JSON object")
        if name not in self.toolbox.tools:
            return ToolOutcome(False, f"no tool named {name!r}; yours: {', '.join(sorted(self.visible()))}")
        if not self.role.allows(name):
            await asyncio.to_thread(self.audit.record, "denial", f"denied {name} to {self.role.name} ({self.task_id})", {
                "task_id": self.task_id, "role": self.role.name, "tool": name, "arguments": arguments,
                "scopes": list(self.role.scopes)})
            return ToolOutcome(False, f"denied: the {self.role.name} role may not call {name} "
                                      f"(its scopes: {', '.join(self.role.scopes)})", denied=True)
        args = {k: v for k, v in arguments.items() if k not in HIDDEN}
        params = self.toolbox.tools[name].input_schema.get("properties") or {}
        if "task_id" in params:
            args["task_id"] = self.task_id
        if name in _MEMORY_SESSION_TOOLS:
            args["session_id"] = self.session_id
            args["agent"] = self.role.name
            if name == "memory_remember":
                args["scope"] = "session"  # what an agent learns stays in its task's session
            if name == "memory_recall":
                asked = args.get("scopes") or ["session", "shared"]
                args["scopes"] = [s for s in asked if s in ("session", "shared")] or ["session", "shared"]
        return await self.toolbox.call(name, args)
