"""Split source files into chunks along their structure, for the ``codebase`` and ``documentation`` collections.

* Python: each top-level function and class (methods stay with their class unless the class is long,
  then each method), plus the module docstring; parsed with :mod:`ast`.
* Markdown: one chunk per heading section (``#`` to ``######``).
* YAML: one chunk per document; an Ansible playbook or task file becomes one chunk per play and per task.
* Anything else that is text: windows of ``WINDOW_LINES`` lines.

Each chunk keeps its path, 1-based first and last line, language and a title
(function name, heading, task name).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

WINDOW_LINES = 60
LONG_CLASS_LINES = 120
MAX_CHUNK_CHARS = 4000
LANGUAGES = {".py": "python", ".md": "markdown", ".markdown": "markdown", ".yml": "yaml", ".yaml": "yaml",
             ".j2": "jinja", ".cfg": "ini", ".ini": "ini", ".toml": "toml", ".sh": "shell", ".txt": "text",
             ".json": "json", ".sql": "sql", ".tmpl": "text"}
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass(frozen=True)
class Chunk:
    """A piece of a file: text, where it is, and what it is."""

    path: str
    start_line: int
    end_line: int
    language: str
    title: str
    text: str


def language_of(path: Path) -> str | None:
    """The language chiffon indexes ``path`` as, or None (not indexed)."""
    return LANGUAGES.get(path.suffix.lower())


def _slice(lines: list[str], start: int, end: int) -> str:
    return "\n".join(lines[start - 1:end])[:MAX_CHUNK_CHARS]


def _windows(path: str, lines: list[str], language: str) -> list[Chunk]:
    return [Chunk(path, i + 1, min(i + WINDOW_LINES, len(lines)), language, f"{path}:{i + 1}",
                  _slice(lines, i + 1, min(i + WINDOW_LINES, len(lines))))
            for i in range(0, len(lines), WINDOW_LINES) if "".join(lines[i:i + WINDOW_LINES]).strip()]


def _python(path: str, text: str, lines: list[str]) -> list[Chunk]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return _windows(path, lines, "python")
    chunks = []
    doc = ast.get_docstring(tree)
    if doc:
        chunks.append(Chunk(path, 1, tree.body[0].end_lineno or 1, "python", f"{path} (module)", doc[:MAX_CHUNK_CHARS]))
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        start = min([d.lineno for d in node.decorator_list] + [node.lineno])
        end = node.end_lineno or node.lineno
        if isinstance(node, ast.ClassDef) and end - start > LONG_CLASS_LINES:
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            head_end = (methods[0].lineno - 1) if methods else end
            chunks.append(Chunk(path, start, head_end, "python", f"class {node.name}", _slice(lines, start, head_end)))
            for m in methods:
                m_start = min([d.lineno for d in m.decorator_list] + [m.lineno])
                chunks.append(Chunk(path, m_start, m.end_lineno or m.lineno, "python", f"{node.name}.{m.name}",
                                    _slice(lines, m_start, m.end_lineno or m.lineno)))
            continue
        kind = "class" if isinstance(node, ast.ClassDef) else "def"
        chunks.append(Chunk(path, start, end, "python", f"{kind} {node.name}", _slice(lines, start, end)))
    return chunks or _windows(path, lines, "python")


def _markdown(path: str, lines: list[str]) -> list[Chunk]:
    starts = [(i + 1, m.group(2).strip()) for i, line in enumerate(lines) if (m := _HEADING.match(line))]
    if not starts or starts[0][0] != 1:
        starts.insert(0, (1, path))
    chunks = []
    for n, (start, title) in enumerate(starts):
        end = starts[n + 1][0] - 1 if n + 1 < len(starts) else len(lines)
        body = _slice(lines, start, end)
        if body.strip():
            chunks.append(Chunk(path, start, end, "markdown", title, body))
    return chunks


def _yaml(path: str, text: str, lines: list[str]) -> list[Chunk]:
    """Plays and tasks by line ranges: each top-level list item is a play (or a task in a task file);
    each item of a play's ``tasks``/``handlers``/``pre_tasks``/``post_tasks`` is a task."""
    try:
        docs = list(yaml.compose_all(text))
    except yaml.YAMLError:
        return _windows(path, lines, "yaml")
    chunks: list[Chunk] = []

    def span(node: yaml.Node) -> tuple[int, int]:
        # end_mark sits where the next token starts: on the next item's line, after its indentation.
        mark = node.end_mark
        ends_before_line = mark.line >= len(lines) or not lines[mark.line][:mark.column].strip()
        end = mark.line if ends_before_line else mark.line + 1
        while end > node.start_mark.line + 1 and not lines[end - 1].strip():
            end -= 1
        return node.start_mark.line + 1, max(node.start_mark.line + 1, end)

    def title(node: yaml.Node, fallback: str) -> str:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == "name" and isinstance(value, yaml.ScalarNode):
                    return str(value.value)
        return fallback

    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, yaml.SequenceNode):
            for item in doc.value:
                start, end = span(item)
                tasks = []
                if isinstance(item, yaml.MappingNode):
                    for key, value in item.value:
                        if key.value in ("tasks", "handlers", "pre_tasks", "post_tasks") and isinstance(value, yaml.SequenceNode):
                            tasks.extend(value.value)
                if tasks:
                    first_task = span(tasks[0])[0]
                    chunks.append(Chunk(path, start, first_task - 1, "yaml", f"play: {title(item, path)}",
                                        _slice(lines, start, first_task - 1)))
                    for task in tasks:
                        t_start, t_end = span(task)
                        chunks.append(Chunk(path, t_start, t_end, "yaml", f"task: {title(task, path)}",
                                            _slice(lines, t_start, t_end)))
                else:
                    chunks.append(Chunk(path, start, end, "yaml", title(item, path), _slice(lines, start, end)))
        else:
            start, end = span(doc)
            chunks.append(Chunk(path, start, end, "yaml", path, _slice(lines, start, end)))
    return [c for c in chunks if c.text.strip()] or _windows(path, lines, "yaml")


def chunk_file(path: str, text: str) -> list[Chunk]:
    """Chunks of one file's ``text``; ``path`` is relative to the indexed root."""
    language = language_of(Path(path)) or "text"
    lines = text.splitlines()
    if language == "python":
        return _python(path, text, lines)
    if language == "markdown":
        return _markdown(path, lines)
    if language == "yaml":
        return _yaml(path, text, lines)
    return _windows(path, lines, language)
