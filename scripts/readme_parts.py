"""Parts of the docs generated from the code, so they cannot drift: the layout of the package.

Used by cog (cogapp) blocks in README.md and docs/layout.md; ``uv run cog -r README.md docs/layout.md`` rewrites
them, and ``uv run cog --check README.md docs/layout.md`` (run by .ci/run) fails when the code changed and the
docs were not regenerated. Every line comes from a module's or package's docstring (its first sentence): a module
without one is an error here, not a gap in the docs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

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
