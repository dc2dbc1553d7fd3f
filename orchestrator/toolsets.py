"""What ``chiffon serve`` exposes, declared without building it: the toolsets and the server's instructions.

Light on purpose (no FastMCP, no services): ``chiffon serve`` reads it before it answers the first
``tools/list``, and ``chiffon install`` to write a client's config. The server itself is built by
:func:`chiffon.orchestrator.server.create_orchestrator`.
"""

from __future__ import annotations

from chiffon.shared.errors import InvalidInput

TOOLSETS = ("ansible", "memory", "llm", "voice", "tasks")
"""The servers an IDE can be given besides the orchestration tools (``chiffon serve --toolsets``)."""
DEFAULT_TOOLSETS = ("ansible", "memory")
"""What ``chiffon serve`` exposes by default: every tool is context on every IDE request (measured in
``benchmarks/toolsets.py``), and some clients cap the number of tools."""

INSTRUCTIONS = (
    "Homelab infrastructure in plain language. plan_request turns a request into a plan with a "
    "check-mode diff; execute_plan asks the human to approve it, then runs it; audit_query answers "
    "what changed and what failed. You cannot approve plans yourself."
)
"""The ``chiffon`` server's instructions (the ``initialize`` answer)."""


def parse_toolsets(value: str | None) -> tuple[str, ...]:
    """``"ansible,memory"`` (``"all"``; ``"none"``: the orchestration tools alone; None: :data:`DEFAULT_TOOLSETS`)
    as a tuple of toolset names.

    Raises:
        InvalidInput: a name that is not one of :data:`TOOLSETS`.
    """
    if value is None:
        return DEFAULT_TOOLSETS
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if names == ("all",):
        return TOOLSETS
    if names in (("none",), ()):
        return ()
    unknown = [n for n in names if n not in TOOLSETS]
    if unknown:
        raise InvalidInput("--toolsets", f"unknown: {', '.join(unknown)}; choose from {', '.join(TOOLSETS)}, all or none")
    return names
