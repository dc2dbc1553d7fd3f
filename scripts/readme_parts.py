"""Parts of the docs generated from the code, so they cannot drift: the layout of the package and the tool lists.

Used by cog (cogapp) blocks in README.md and docs/layout.md; ``uv run cog -r README.md docs/layout.md`` rewrites
them, and ``uv run cog --check README.md docs/layout.md`` (run by .ci/run) fails when the code changed and the
docs were not regenerated. Every line comes from a module's or package's docstring (its first sentence): a module
without one is an error here, not a gap in the docs.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import re
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parent.parent
TOP = ("servers", "orchestrator", "shared")


def first_sentence(path: Path) -> str:
    """The first sentence of the module docstring of ``path``, on one line.

    Raises:
        ValueError: the module has no docstring.
    """
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not doc:
        raise ValueError(f"{path.relative_to(CHECKOUT)} has no docstring: say in one sentence what it is for")
    paragraph = " ".join(doc.split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return match.group(1) if match else paragraph


def packages() -> list[Path]:
    """Every package folder under the top-level code folders, in order (``servers``, ``servers/ansible``, ...)."""
    found = [p.parent for top in TOP for p in (CHECKOUT / top).rglob("__init__.py") if "__pycache__" not in p.parts]
    return sorted(found, key=lambda p: (TOP.index(p.relative_to(CHECKOUT).parts[0]), p.relative_to(CHECKOUT).parts))


def modules(package: Path) -> list[Path]:
    """The modules directly in ``package`` (``__init__`` and ``__main__`` left out), by name."""
    return sorted(p for p in package.glob("*.py") if p.stem not in ("__init__", "__main__"))


def summary() -> str:
    """README's layout: one line per package, with what it is and the names of its modules."""
    lines = []
    for package in packages():
        names = ", ".join(p.stem for p in modules(package))
        rel = package.relative_to(CHECKOUT).as_posix()
        lines.append(f"- `{rel}/`: {first_sentence(package / '__init__.py')}" + (f" Modules: {names}." if names else ""))
    return "\n".join(lines) + "\n"


def detail() -> str:
    """docs/layout.md: every package, then each of its modules with the first sentence of its docstring."""
    parts = []
    for package in packages():
        rel = package.relative_to(CHECKOUT).as_posix()
        parts.append(f"## `{rel}/`\n\n{first_sentence(package / '__init__.py')}\n")
        rows = [f"| `{p.name}` | {first_sentence(p).replace('|', '/')} |" for p in modules(package)]
        if rows:
            parts.append("| module | what it is |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


class _Unbuilt:
    """Stands in for a server's service while its tools are only listed (never called): every attribute and call
    gives another stand-in, so a server can be constructed without PostgreSQL, Redis or models."""

    def __getattr__(self, name: str) -> _Unbuilt:
        return _Unbuilt()

    def __call__(self, *args: object, **kwargs: object) -> _Unbuilt:
        return _Unbuilt()


def _server(name: str) -> Any:
    """The FastMCP server ``name`` (ansible, llm, memory, tasks, voice, or orchestrator for its own tools) over
    stand-ins: its tool declarations are the code's."""
    if name == "orchestrator":
        from chiffon.orchestrator.server import create_orchestrator

        return create_orchestrator(_Unbuilt(), None, None, toolsets=())  # type: ignore[arg-type]
    module = importlib.import_module(f"chiffon.servers.{name}.server")
    return getattr(module, f"create_{name}_server")(_Unbuilt())


def _named(schema: dict[str, Any]) -> str:
    """A schema's name: its title, the model a ``$ref`` points to, ``list of X`` for an array, else its type."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return f"list of {_named(schema['items'])}"
    return str(schema.get("title") or schema.get("type") or "a value")


def _returns(schema: dict[str, Any] | None) -> str:
    """What a tool returns, from its output schema: the wrapped value's name, else the object's fields."""
    if not schema:
        return ""
    props = schema.get("properties", {})
    if schema.get("x-fastmcp-wrap-result") and "result" in props:
        return _named(props["result"])
    names = [f"`{p}`" for p in props]
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def tool_table(name: str) -> str:
    """A server's tools as the code declares them: name, arguments (``?`` optional), what it returns (its output
    schema's fields), its MCP annotations and the first sentence of its description."""
    tools = asyncio.run(_server(name).list_tools())
    rows = ["| tool | input | returns | annotations | what it does |", "|---|---|---|---|---|"]
    for tool in sorted(tools, key=lambda t: t.name):
        params = tool.parameters.get("properties", {})
        required = set(tool.parameters.get("required", []))
        args = ", ".join(f"`{p}`" if p in required else f"`{p}?`" for p in params)
        notes = tool.annotations
        marks = [label for flag, label in ((notes and notes.read_only_hint, "read-only"),
                                           (notes and notes.destructive_hint, "destructive"),
                                           (notes and notes.idempotent_hint, "idempotent"),
                                           (notes and notes.open_world_hint, "open world")) if flag]
        summary = " ".join((tool.description or "").split())
        match = re.match(r"(.+?[.!?])(\s|$)", summary)
        rows.append(f"| `{tool.name}` | {args} | {_returns(tool.output_schema)} | {', '.join(marks)} | "
                    f"{(match.group(1) if match else summary).replace('|', '/')} |")
    return "\n".join(rows) + "\n"
