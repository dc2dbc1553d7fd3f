"""A plan's check-mode diff and warnings as HTML a reviewer can read, with no web framework code.

``plan.diff`` is one text: per changed task and host a ``# TASK on HOST`` line, then Ansible's diff of one file
(or state) as a unified diff headed by the file's destination (:func:`servers.ansible.events.render_diff`), or a
module's free-text ``prepared`` diff. :func:`parse_diff` splits it into :class:`FileChange` s, one per host and
destination; :func:`diff_html` shows them per host, one summary line per file (destination, created / changed /
removed, +N/-M lines), each file a ``<details>`` with a coloured unified diff, folded when longer than
:data:`FOLD_LINES` lines. :func:`warnings_html` shows a warning about a command as the task's name and the command
as the playbook wrote it. Every string from the plan is escaped with :func:`html.escape`: nothing in a repo, a
request or Ansible's output becomes markup.
"""

from __future__ import annotations

import ast
import html
import re
from dataclasses import dataclass, field
from typing import Literal

FOLD_LINES = 80  # a file's diff longer than this many lines starts folded (a generated file, a long JSON)
Kind = Literal["created", "changed", "removed", "other"]
_HEADER = re.compile(r"^# (?P<task>.+) on (?P<host>\S+)$")
_HUNK = re.compile(r"^@@ -(?P<old>\d+(?:,\d+)?) \+(?P<new>\d+(?:,\d+)?) @@")
_TEMP = re.compile(r"(/\.ansible/tmp/|ansible-local-|^/tmp/tmp)")
_SUFFIX = re.compile(r" \((content|file attributes)\)$")
_STATE = re.compile(r"^([+-])state: (\S+)$")
# Jinja's way to write a literal {{ in a command: {{ "{{" }} (or with single quotes); shown as what the shell gets
_LITERAL = re.compile(r"""\{\{\s*(["'])(\{\{|\}\}|\{%|%\}|\{#|#\})\1\s*\}\}""")
_RAW = re.compile(r"\{%-?\s*(end)?raw\s*-?%\}")
# the command warnings of servers.ansible.preview.check_mode_notes: "LEAD: 'TASK NAME': COMMAND"
_COMMAND_NOTE = re.compile(r"""^(?P<lead>runs even in check mode \(it ran during this preview\)|runs a command that """
                           r"""check mode cannot preview \(it runs after approval\)): (?P<name>'(?:[^'\\]|\\.)*'|"""
                           r'''"(?:[^"\\]|\\.)*")(?:: (?P<cmd>.*)| \((?P<module>[^()]*)\))?$''')


@dataclass
class FileChange:
    """What a plan would do to one file (or one thing Ansible diffs) on one host.

    ``dest``: the absolute path on the host, or the best name the diff gives (``""`` for a free-text diff);
    ``kind``: created, changed, removed, or other (a module's free-text diff); ``added`` / ``removed``: lines
    starting with ``+`` / ``-`` (headers excluded); ``lines``: the diff's hunks, headers left out; ``tasks``:
    the tasks that change it, in order.
    """

    host: str
    dest: str
    kind: Kind = "changed"
    added: int = 0
    removed: int = 0
    lines: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)

    @property
    def folded(self) -> bool:
        """True when its diff is longer than :data:`FOLD_LINES` lines: shown closed until clicked."""
        return len(self.lines) > FOLD_LINES


def destination(before_header: str, after_header: str) -> str:
    """The file a diff changes, from its ``---`` and ``+++`` headers: the first that is a path on the host (not
    Ansible's local temp copy of a template, not ``before``/``after``/``dynamically generated``), without the
    `` (content)`` / `` (file attributes)`` suffix; else the temp file's name (``compose.yaml.j2``); else ""."""
    for header in (before_header, after_header):
        header = _SUFFIX.sub("", header.strip())
        if header.startswith("/") and not _TEMP.search(header):
            return header
    for header in (after_header, before_header):
        if header.strip().startswith("/"):
            return "(rendered from " + header.strip().rsplit("/", 1)[-1] + ")"
    return ""


def parse_diff(text: str, hosts: list[str] | None = None) -> list[FileChange]:
    """``plan.diff`` as one :class:`FileChange` per host and destination, in the order the check reported them.

    ``hosts``: the plan's hosts; when given, only a ``# TASK on HOST`` line naming one of them starts a new entry
    (a line of a module's free-text diff cannot pass for one). Parts of one file (a ``lineinfile``'s content and
    its attributes) are merged. Never raises: text it does not recognise stays in the entry it belongs to.
    """
    changes: dict[tuple[str, str], FileChange] = {}
    order: list[FileChange] = []
    for task, host, body in _blocks(text, hosts):
        change = _one(host, body)
        key = (host, change.dest or f"{task}\0{len(order)}")
        if key in changes:
            seen = changes[key]
            seen.added, seen.removed = seen.added + change.added, seen.removed + change.removed
            seen.lines += change.lines
            seen.kind = seen.kind if seen.kind != "changed" else change.kind
        else:
            changes[key] = seen = change
            order.append(change)
        if task not in seen.tasks:
            seen.tasks.append(task)
    return order


def _blocks(text: str, hosts: list[str] | None) -> list[tuple[str, str, list[str]]]:
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        head = _HEADER.match(line)
        if head and (hosts is None or head["host"] in hosts):
            blocks.append((head["task"], head["host"], []))
        elif blocks:
            blocks[-1][2].append(line)
        elif line.strip():  # text before any header: kept, under no task
            blocks.append(("", "", [line]))
    return blocks


def _one(host: str, body: list[str]) -> FileChange:
    """One ``# TASK on HOST`` block: its destination, kind and line counts."""
    before = next((ln[4:] for ln in body if ln.startswith("--- ")), None)
    after = next((ln[4:] for ln in body if ln.startswith("+++ ")), None)
    if before is None and after is None:  # a module's own text (prepared): no files, no line counts
        return FileChange(host, "", "other", lines=body)
    lines = [ln for ln in body if not ln.startswith(("--- ", "+++ "))]
    added = sum(1 for ln in lines if ln.startswith("+"))
    removed = sum(1 for ln in lines if ln.startswith("-"))
    return FileChange(host, destination(before or "", after or ""), _kind(lines), added, removed, lines)


def _kind(lines: list[str]) -> Kind:
    """created: every hunk starts from nothing (``-0,0``) or the state goes from absent; removed: every hunk ends
    in nothing (``+0,0``) or the state becomes absent; else changed."""
    states = {m[1]: m[2] for ln in lines if (m := _STATE.match(ln))}
    if states.get("+") == "absent":
        return "removed"
    if states.get("-") == "absent":
        return "created"
    hunks = [m for ln in lines if (m := _HUNK.match(ln))]
    if hunks and all(h["old"] == "0,0" for h in hunks):
        return "created"
    if hunks and all(h["new"] == "0,0" for h in hunks):
        return "removed"
    return "changed"


def summary(changes: list[FileChange]) -> str:
    """One line over the whole diff: ``3 file(s) on 2 host(s): 2 created, 1 changed; +40 -2 lines``."""
    if not changes:
        return "check mode predicts no file changes"
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    hosts = len({c.host for c in changes})
    return (f"{len(changes)} file(s) on {hosts} host(s): {kinds}; +{sum(c.added for c in changes)} "
            f"-{sum(c.removed for c in changes)} lines")


def _line_html(line: str) -> str:
    cls = ("cf-hunk" if line.startswith("@@") else "cf-add" if line.startswith("+") else
           "cf-del" if line.startswith("-") else "cf-ctx")
    return f'<span class="{cls}">{html.escape(line)}</span>'


def file_html(change: FileChange) -> str:
    """One file as ``<details>``: the summary line (kind, destination, +N/-M, task) and its coloured diff."""
    e = html.escape
    name = change.dest or (f"{change.tasks[0]} (module output)" if change.tasks else "(module output)")
    counts = (f'<span class="cf-add">+{change.added}</span> <span class="cf-del">-{change.removed}</span>'
              if change.kind != "other" else "")
    fold = f' <span class="cf-note">{len(change.lines)} lines, folded</span>' if change.folded else ""
    tasks = e(", ".join(change.tasks))
    return (f'<details class="cf-file"{"" if change.folded else " open"}>'
            f'<summary><span class="cf-kind cf-{change.kind}">{change.kind}</span> '
            f'<code class="cf-dest">{e(name)}</code> {counts}{fold} <span class="cf-task">{tasks}</span></summary>'
            f'<pre class="cf-lines">{"".join(_line_html(ln) for ln in change.lines)}</pre></details>')


def diff_html(text: str, hosts: list[str] | None = None) -> str:
    """The whole check-mode diff as HTML: a summary line, then per host its files (:func:`file_html`)."""
    changes = parse_diff(text, hosts)
    parts = [f'<div class="cf-diff"><p class="cf-summary">{html.escape(summary(changes))}</p>']
    for host in dict.fromkeys(c.host for c in changes):
        mine = [c for c in changes if c.host == host]
        parts.append(f'<section class="cf-host"><h4>{html.escape(host or "(no host)")} '
                     f'<small>{len(mine)} file(s)</small></h4>')
        parts += [file_html(c) for c in mine]
        parts.append("</section>")
    parts.append("</div>")
    return "".join(parts)


def as_written(command: str) -> str:
    """A command as the shell will get it where Jinja only escaped itself: ``{{ "{{" }}`` is ``{{``, and
    ``{% raw %}`` markers go; variables (``{{ kuma_dir }}``) stay, since only the run knows their values."""
    return _RAW.sub("", _LITERAL.sub(lambda m: m[2], command))


def warning_html(warning: str) -> str:
    """One warning as an ``<li>``: a command warning as its kind, the task's name and the command
    (:func:`as_written`) in monospace; any other warning as its text."""
    e = html.escape
    m = _COMMAND_NOTE.match(warning)
    if not m:
        return f'<li class="cf-warning">{e(warning)}</li>'
    try:
        name = str(ast.literal_eval(m["name"]))
    except (ValueError, SyntaxError):
        name = m["name"].strip("'\"")
    lead = m["lead"].split(" (")[0]
    detail = (f'<code class="cf-command">{e(as_written(m["cmd"]))}</code>' if m["cmd"] is not None else
              f'<span class="cf-note">({e(m["module"] or "")})</span>')
    return (f'<li class="cf-warning"><span class="cf-lead">{e(lead)}</span>: <b class="cf-task">{e(name)}</b> '
            f'{detail}</li>')


def warnings_html(warnings: list[str]) -> str:
    """The plan's warnings as a list (:func:`warning_html`); "" when there are none."""
    if not warnings:
        return ""
    return '<ul class="cf-warnings">' + "".join(warning_html(w) for w in warnings) + "</ul>"


def risk_badge(risk: str) -> str:
    """The risk as a coloured badge: low and medium green/amber, high red (any other word grey)."""
    cls = risk if risk in ("low", "medium", "high") else "unknown"
    return f'<span class="cf-risk cf-risk-{cls}">{html.escape(risk)} risk</span>'


CSS = """
.cf-diff pre.cf-lines { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  line-height: 1.4; margin: 0; padding: 6px 8px; overflow-x: auto; white-space: pre; }
.cf-diff .cf-lines span { display: block; min-height: 1.4em; }
.cf-diff .cf-add { color: #116329; } .cf-diff .cf-lines .cf-add { background: #e6ffec; color: #116329; }
.cf-diff .cf-del { color: #a40e26; } .cf-diff .cf-lines .cf-del { background: #ffebe9; color: #a40e26; }
.cf-diff .cf-lines .cf-hunk { background: #ddf4ff; color: #0550ae; }
.cf-diff details.cf-file { border: 1px solid var(--border-color-primary); border-radius: 6px; margin: 6px 0; }
.cf-diff details.cf-file > summary { cursor: pointer; padding: 4px 8px; overflow-wrap: anywhere; }
.cf-diff .cf-dest { font-weight: 600; }
.cf-kind { font-size: 11px; text-transform: uppercase; border-radius: 4px; padding: 1px 5px; color: #fff; }
.cf-created { background: #1a7f37; } .cf-changed { background: #9a6700; } .cf-removed { background: #cf222e; }
.cf-other { background: #6e7781; }
.cf-task, .cf-note { color: var(--body-text-color-subdued); font-size: 12px; }
.cf-warnings .cf-task { color: inherit; font-size: inherit; }
.cf-warnings code.cf-command { font-family: ui-monospace, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
.cf-risk { display: inline-block; border-radius: 999px; padding: 3px 12px; font-weight: 700; color: #fff; }
.cf-risk-low { background: #1a7f37; } .cf-risk-medium { background: #bf8700; } .cf-risk-high { background: #cf222e; }
.cf-risk-unknown { background: #6e7781; }
.gradio-container { overflow: clip !important; }  /* hidden would make it the bar's scroll box: sticky never sticks */
#plan-actions { position: sticky; bottom: 0; z-index: 50; background: var(--background-fill-primary);
  border-top: 2px solid var(--border-color-primary); box-shadow: 0 -4px 10px rgba(0, 0, 0, .08);
  padding: 8px 4px; gap: 6px; }
#plan-actions.cf-high, #plan-actions:has(.cf-risk-high) { border-top-color: #cf222e; }
"""
