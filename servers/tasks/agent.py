"""The agent loop: one role, one goal, tool calls through the router until a final answer.

Each step asks the ``llm`` router for exactly one action, offered two ways:

* native tool use where the backend has it (Anthropic, with ``tool_choice: any``):
  the role's tools plus :data:`FINAL_TOOL`, whose input is the final answer;
* the strict JSON protocol everywhere else, constrained by a JSON Schema built
  from the same tools, which llama.cpp and Ollama turn into a decoding grammar
  (so even a small local model emits well-formed actions):

      {"tool": "repo_read_file", "arguments": {"path": "site.yml"}}
      {"final": "what the agent hands back"}          (or the caller's final schema)

A native call is put in the JSON shape and both are validated by one parser
(:func:`parse_action`); whether the role may call the tool is decided where it is
dispatched (:class:`~servers.tasks.tools.ScopedTools`). A reply that is not
one valid action is shown back to the model with the reason, up to
``tasks.malformed_retries`` times; then the step fails (:class:`MalformedReplies`).

Limits: the role's ``max_steps`` (the last step may only answer) and
``max_tokens`` (completion tokens over all steps; when fewer than
:data:`MIN_STEP_TOKENS` are left the next step must answer). Every reply, call,
result, refusal and answer is a step in ``queue_steps``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chiffon.servers.llm.router import Router
from chiffon.servers.llm.types import Hints, Message
from chiffon.servers.tasks.roles import Role
from chiffon.servers.tasks.tools import ScopedTools
from chiffon.shared.errors import ChiffonError
from chiffon.shared.queue import TaskContext

STEP_MAX_TOKENS = 512  # completion tokens one step may use
MIN_STEP_TOKENS = 64  # below this budget left, the next step must be the final answer
PACKAGED_STRING_CAP = 300  # grammar cap on strings for a packaged model (tasks.grammar_max_chars unset): a 135M
# model can repeat a sentence until its token limit, and the unclosed string then fails the step
KEEP_TURNS = 8  # messages kept after the goal (older tool exchanges are dropped from the prompt, not the log)
FINAL_TEXT: dict[str, Any] = {"type": "object", "properties": {"final": {"type": "string"}},
                              "required": ["final"], "additionalProperties": False}
VERDICT: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"enum": ["approve", "reject"]}, "feedback": {"type": "string"}},
    "required": ["verdict", "feedback"], "additionalProperties": False,
}


FINAL_TOOL = "final_answer"  # with native tool use, the final answer is a tool call too (tool_choice: any)
# A file read is not offered again while its text is in the prompt (KEEP_TURNS) and the agent has not written it.
READ_ONCE = ("repo_read_file", "path")
WRITES = ("repo_write_file", "path")


class MalformedReplies(ChiffonError):
    """The model gave no valid action within the retry limit; the step (and the task) fails."""


@dataclass(frozen=True)
class AgentResult:
    """How an agent finished: its final object, steps and completion tokens used, and why it stopped."""

    final: dict[str, Any]
    steps: int
    tokens: int
    stopped: str  # answered | max_steps | budget


def cap_strings(schema: dict[str, Any], cap: int | None) -> dict[str, Any]:
    """``schema`` with every string limited to ``cap`` characters (None: unchanged).

    A cap keeps a weak model from rambling inside a string until its token limit. llama-cpp-python's
    grammar converter unrolls ``maxLength`` into nested rules, so caps beyond about a thousand characters
    fail to compile there; llama-server (C++) and Ollama take any cap.
    """
    if cap is None:
        return schema
    if schema.get("type") == "string":
        return {**schema, "maxLength": min(int(schema.get("maxLength", cap)), cap)}
    out = dict(schema)
    for key in ("properties",):
        if key in out:
            out[key] = {k: cap_strings(v, cap) for k, v in out[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = cap_strings(out[key], cap)
    if "anyOf" in out:
        out["anyOf"] = [cap_strings(o, cap) for o in out["anyOf"]]
    return out


def simplify(schema: dict[str, Any], defs: dict[str, Any] | None = None, depth: int = 0) -> dict[str, Any]:
    """A tool's input schema in the subset llama.cpp's and Ollama's grammar converters handle well.

    ``$ref`` is inlined, ``anyOf [X, null]`` becomes X, arrays get ``maxItems``, optional free-form maps are
    dropped; anything else becomes a string.
    """
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        schema = options[0] if len(options) == 1 else {"type": "string"}
    if "enum" in schema:
        return {"enum": schema["enum"]}
    kind = schema.get("type")
    if kind == "string":
        return {"type": "string", **({"maxLength": schema["maxLength"]} if "maxLength" in schema else {})}
    if kind in ("integer", "number", "boolean"):
        return {"type": kind}
    if kind == "array" and depth < 2:
        return {"type": "array", "items": simplify(schema.get("items", {"type": "string"}), defs, depth + 1),
                "maxItems": 20}
    if kind == "object" and depth < 2 and schema.get("properties"):
        required = set(schema.get("required", []))
        props = {k: simplify(v, defs, depth + 1) for k, v in schema["properties"].items()}
        # An optional free-form map (memory_remember's metadata) is left out: a small model can fill it with
        # keys until its token limit, and the unclosed reply fails the step.
        props = {k: v for k, v in props.items() if k in required or "additionalProperties" not in v}
        return {"type": "object", "properties": props, "required": [r for r in schema.get("required", []) if r in props],
                "additionalProperties": False}
    if kind == "object":
        return {"type": "object", "additionalProperties": {"type": "string"}}
    return {"type": "string"}


Choices = dict[str, dict[str, list[str]]]  # tool -> argument -> the values it may take now (an enum)


def action_schema(tools: ScopedTools, final_schema: dict[str, Any], final_only: bool,
                  cap: int | None = None, choices: Choices | None = None) -> dict[str, Any]:
    """One call of a visible tool with its arguments, or the final answer; strings capped at ``cap`` chars.

    ``choices`` narrows string arguments to the values that exist now, e.g. ``repo_read_file``'s ``path`` to
    the worktree's files not read yet: under a grammar a small model then cannot name a file that is not there,
    nor read the same file again instead of moving on. A tool whose narrowed argument has no value left is not
    offered.
    """
    if final_only:
        return cap_strings(final_schema, cap)
    calls = []
    for name in sorted(tools.visible()):
        arguments = simplify(tools.schema_for(name))
        narrowed = {arg: values for arg, values in (choices or {}).get(name, {}).items()
                    if arg in arguments.get("properties", {})}
        if any(not values for values in narrowed.values()):
            continue
        for arg, values in narrowed.items():
            arguments["properties"][arg] = {"enum": values}
        calls.append({"type": "object", "properties": {"tool": {"enum": [name]}, "arguments": arguments},
                      "required": ["tool", "arguments"], "additionalProperties": False})
    return cap_strings({"anyOf": [*calls, final_schema]}, cap)


def native_tools(tools: ScopedTools, final_schema: dict[str, Any], final_only: bool) -> list[dict[str, Any]]:
    """The same actions as native tool definitions (``[{name, description, input_schema}]``), the final answer
    last as :data:`FINAL_TOOL`; for backends with tool use."""
    specs = [] if final_only else [
        {"name": name, "description": (tool.description or name)[:1000], "input_schema": tools.schema_for(name)}
        for name, tool in sorted(tools.visible().items())]
    specs.append({"name": FINAL_TOOL, "description": "Give your final answer; this ends your work.",
                  "input_schema": final_schema})
    return specs


def tool_catalog(tools: ScopedTools) -> str:
    """``name(arg, optional?): first line of the description`` per visible tool."""
    lines = []
    for name, tool in sorted(tools.visible().items()):
        schema = tools.schema_for(name)
        required = set(schema.get("required", []))
        args = ", ".join(a if a in required else f"{a}?" for a in schema.get("properties", {}))
        lines.append(f"- {name}({args}): {(tool.description or '').strip().splitlines()[0][:160] if tool.description else ''}")
    return "\n".join(lines) or "(none: answer directly)"


def parse_action(text: str, tools_allowed: bool, final_keys: set[str]) -> tuple[str, dict[str, Any]]:
    """``("tool", {"tool": name, "arguments": {...}})`` or ``("final", {...})``.

    Only the shape is checked here; whether the role may call the tool is decided where it is dispatched
    (:class:`~servers.tasks.tools.ScopedTools`), so a call outside the scopes is refused and audited.

    Raises:
        ValueError: not one JSON object, an unknown key set, or a tool call when only an answer is allowed.
    """
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(stripped, strict=False)  # raw control characters inside strings are tolerated
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(value, dict):
        raise ValueError("the reply must be a JSON object")
    if "tool" in value:
        name, args = value.get("tool"), value.get("arguments", {})
        if not tools_allowed:
            raise ValueError("no more tool calls: give your final answer")
        if not isinstance(name, str) or not name:
            raise ValueError("tool must be a tool name")
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        return "tool", {"tool": name, "arguments": args}
    if final_keys <= set(value):
        return "final", value
    raise ValueError(f"expected keys tool+arguments or {'+'.join(sorted(final_keys))}, got {', '.join(value) or 'none'}")


def _as_action(call: dict[str, Any]) -> dict[str, Any]:
    """A native tool call in the JSON protocol's shape, so one parser checks both."""
    if call["name"] == FINAL_TOOL:
        return dict(call["arguments"])
    return {"tool": call["name"], "arguments": call["arguments"]}


class Agent:
    """One role working on one task's goal."""

    def __init__(self, role: Role, router: Router, tools: ScopedTools, ctx: TaskContext,
                 choices: Callable[[], Awaitable[Choices]] | None = None) -> None:
        self.role = role
        self.choices = choices  # asked before each step: the argument values that exist now
        self.router = router
        self.tools = tools
        self.ctx = ctx
        self.retries = ctx.rt.settings.tasks.malformed_retries
        self.result_chars = ctx.rt.settings.tasks.tool_result_chars
        settings = ctx.rt.settings.tasks
        wanted = settings.role_tiers.get(role.name, role.tier)
        # A role meant for ``local`` runs on the tier it falls back to when ``local`` is not configured (the
        # packaged quick tier of a fresh install); the router refuses a forced tier that is not configured.
        self.tier = router.nearest_tier(wanted) or wanted
        self.string_cap = settings.grammar_max_chars
        if self.string_cap is None and router.is_packaged(self.tier):
            self.string_cap = PACKAGED_STRING_CAP
        self.temperature = settings.temperature
        self.constrained = settings.constrained_decoding

    def _system(self, final_schema: dict[str, Any]) -> str:
        final_keys = ", ".join(final_schema.get("required", []))
        return (f"{self.role.prompt}\n\n## How you act\nEach reply is exactly one action: a tool call "
                f'(as JSON, {{"tool": NAME, "arguments": {{...}}}}, unless you are given native tools) or your final '
                f"answer (keys: {final_keys}; with native tools, call {FINAL_TOOL}). You get each tool's result in "
                f"the next message. At most {self.role.max_steps} replies.\n\n"
                f"## Your tools\n{tool_catalog(self.tools)}")

    async def run(self, goal: str, context: str = "", final_schema: dict[str, Any] = FINAL_TEXT) -> AgentResult:
        """Work on ``goal`` until a final answer, the step limit or the token budget.

        Raises:
            MalformedReplies: a step got no valid action within the retry limit.
            NoBackendAvailable: the router could not answer (every tier failed).
            TaskCancelled: the task was cancelled (checked before each step).
        """
        head = [Message(role="system", content=self._system(final_schema)),
                Message(role="user", content=goal + (f"\n\n{context}" if context else ""))]
        turns: list[Message] = []
        allowed = set(self.tools.visible())
        final_keys = set(final_schema.get("required", []))
        used = 0
        read: dict[str, int] = {}  # path -> the step that read it
        await self.ctx.step(self.role.name, "note", {"text": f"{self.role.title} starts", "goal": goal[:2000],
                                                     "tier": self.tier})
        for step in range(1, self.role.max_steps + 1):
            await self.ctx.check_cancelled()
            step_started = time.perf_counter()
            left = self.role.max_tokens - used
            forced = "budget" if left < MIN_STEP_TOKENS * 2 else "max_steps" if step == self.role.max_steps else None
            final_only = forced is not None or not allowed
            choices = await self._choices({p for p, at in read.items() if step - at < KEEP_TURNS // 2}) \
                if not final_only else None
            schema = action_schema(self.tools, final_schema, final_only, self.string_cap, choices)
            if forced and allowed:
                turns.append(Message(role="user", content="This is your last reply: give your final answer now."))
            specs = native_tools(self.tools, final_schema, final_only)
            kind, action, spent = await self._ask(head + turns[-KEEP_TURNS:], schema, specs, set() if final_only else allowed,
                                                  final_keys, max(MIN_STEP_TOKENS, min(STEP_MAX_TOKENS, left)), step)
            used += spent
            turns.append(Message(role="assistant", content=json.dumps(action)))
            if kind == "final":
                await self.ctx.step(self.role.name, "final", {
                    **action, "step_s": round(time.perf_counter() - step_started, 3)})
                return AgentResult(action, step, used, forced or "answered")
            started = time.perf_counter()
            outcome = await self.tools.call(action["tool"], action["arguments"])
            shown = outcome.text[: self.result_chars]
            await self.ctx.step(self.role.name, "denied" if outcome.denied else "tool_result" if outcome.ok else "error", {
                "tool": action["tool"], "ok": outcome.ok, "text": shown,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "step_s": round(time.perf_counter() - step_started, 3)})
            path = action["arguments"].get(READ_ONCE[1])
            if outcome.ok and isinstance(path, str):
                if action["tool"] == READ_ONCE[0]:
                    read[path] = step
                elif action["tool"] == WRITES[0]:
                    read.pop(path, None)
            label = "Result" if outcome.ok else "Error"
            turns.append(Message(role="user", content=f"{label} of {action['tool']}: {shown or '(empty)'}"))
        raise AssertionError("unreachable: the last step may only answer")

    async def _choices(self, read: set[str]) -> Choices | None:
        """The argument values this step may use: :attr:`choices` less the files whose text the prompt holds."""
        if self.choices is None:
            return None
        choices = await self.choices()
        tool, arg = READ_ONCE
        if arg in choices.get(tool, {}):
            choices[tool][arg] = [p for p in choices[tool][arg] if p not in read]
        return choices

    async def _ask(self, messages: list[Message], schema: dict[str, Any], specs: list[dict[str, Any]],
                   allowed: set[str], final_keys: set[str], max_tokens: int,
                   step: int) -> tuple[str, dict[str, Any], int]:
        spent = 0
        extra: list[Message] = []
        reason = ""
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            reply = await self.router.chat(
                messages + extra, Hints(tier=self.tier, priority="background", caller=f"agent:{self.role.name}"),
                max_tokens=max_tokens, temperature=self.temperature,
                json_schema=schema if self.constrained else None, tools=specs)
            spent += reply.tokens_out
            native = bool(reply.tool_calls)
            text = json.dumps(_as_action(reply.tool_calls[0])) if native else reply.text
            await self.ctx.step(self.role.name, "llm", {
                "step": step, "attempt": attempt + 1, "text": text[:4000], "native": native,
                "tier": reply.answered_by.tier, "model": reply.answered_by.model,
                "s": round(time.perf_counter() - started, 3), "finish_reason": reply.finish_reason},
                tokens=reply.tokens_out)
            try:
                kind, action = parse_action(text, bool(allowed), final_keys)
            except ValueError as exc:
                reason = str(exc)
                await self.ctx.step(self.role.name, "error", {"step": step, "malformed": reason})
                extra = [Message(role="assistant", content=text[:1000] or "(empty)"),
                         Message(role="user", content=f"That reply was not valid: {reason}. Reply with exactly one "
                                                      "JSON object as described, nothing else.")]
                continue
            if kind == "tool":
                await self.ctx.step(self.role.name, "tool_call", action)
            return kind, action, spent
        raise MalformedReplies(f"{self.role.name}, step {step}: no valid action in {self.retries + 1} replies "
                               f"(last: {reason})")
