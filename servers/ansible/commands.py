"""The repo's own ``ansible-playbook`` commands: the owner's word on playbook, tags, limit and inventory.

Homelab owners write down how they run things: a ``Makefile`` target, a ``Taskfile.yml`` task, a
``justfile`` recipe, a shell script, or a code block in the README (``ansible-playbook -i
inventories/prod site.yml --tags jellyfin``). Those invocations are read statically (nothing is run)
and used as evidence by :mod:`servers.ansible.understand`: a command that runs a unit's playbook with
its tag, or limited to the service's group, is strong evidence for that unit, its ``--limit`` and its
inventory ("the repo's Taskfile runs: site.yml --limit jellyfin").

Arguments that are templated (``{{.PLAYBOOK}}``, ``$(INV)``, ``${LIMIT}``) are left out: chiffon reads
what is written, it never evaluates a task runner.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from chiffon.servers.ansible.plays import LIMIT_RE, TAG_RE

RUNNER_FILES = ("Makefile", "makefile", "GNUmakefile", "Taskfile.yml", "Taskfile.yaml", "taskfile.yml",
                "justfile", "Justfile", ".justfile", "mise.toml", ".mise.toml", "package.json", "tasks.py",
                "noxfile.py")
README_NAMES = ("README.md", "README", "README.rst", "readme.md", "Readme.md")
MAX_FILE_BYTES = 256_000
MAX_LINE_CHARS = 2_000
_INVOCATION = re.compile(r"ansible-playbook\b(?P<rest>[^\n;|&`]*)")
_CD = re.compile(r"\bcd\s+(?P<dir>[\w./-]+)\s*(?:&&|;)\s*(?:[\w=./-]+\s+)*ansible-playbook\b")
_TEMPLATED = re.compile(r"\{\{|\$\(|\$\{|\$[A-Za-z_]|<[a-z_-]+>|%\w")


@dataclass(frozen=True)
class Command:
    """One ``ansible-playbook`` invocation written in the repo.

    ``playbook`` and ``inventory`` are repo-relative when they resolve to a file or folder of the repo
    (else as written); ``playbook`` is None when the line names none the repo has (its ``-i`` still counts as
    evidence for the inventory); ``source`` is ``file:line``.
    """

    source: str
    playbook: str | None
    inventory: str | None = None
    tags: tuple[str, ...] = ()
    limit: str | None = None
    text: str = ""

    def describe(self) -> str:
        """``site.yml --tags jellyfin --limit media -i inventories/prod`` (what the owner types)."""
        parts = [self.playbook or "?"]
        if self.tags:
            parts.append("--tags " + ",".join(self.tags))
        if self.limit:
            parts.append(f"--limit {self.limit}")
        if self.inventory:
            parts.append(f"-i {self.inventory}")
        return " ".join(parts)


def command_files(root: Path, files: list[str]) -> list[Path]:
    """The task-runner files, scripts and READMEs among ``files`` (absolute paths)."""
    out = []
    for name in files:
        path = Path(name)
        if path.name in RUNNER_FILES or path.name in README_NAMES or path.suffix in (".sh", ".bash") or \
                (path.name.lower().endswith(".md") and len(path.relative_to(root).parts) <= 3):
            out.append(path)
    return sorted(out)


def _joined_lines(text: str) -> list[tuple[int, str]]:
    """Lines with shell continuations (``\\`` at the end) joined, numbered from 1."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def parse_invocation(rest: str) -> dict[str, object]:
    """The flags of one ``ansible-playbook`` command line (what follows the word), as written:
    ``{playbook, inventory, tags, limit}``; templated values are left out."""
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:
        words = rest.split()
    found: dict[str, object] = {"playbook": None, "inventory": None, "tags": (), "limit": None}
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        flag = word
        if "=" in word and word.startswith("--"):
            flag, value = word.split("=", 1)
        elif word in ("-i", "--inventory", "--inventory-file", "-t", "--tags", "-l", "--limit", "-e",
                      "--extra-vars", "--skip-tags", "--vault-id", "--vault-password-file", "-u", "--user",
                      "-f", "--forks", "-c", "--connection", "--become-user", "--private-key"):
            value = words[i + 1] if i + 1 < len(words) else None
            i += 1
        elif len(word) > 2 and word[:2] in ("-i", "-t", "-l") and not word.startswith("--"):
            flag, value = word[:2], word[2:]
        i += 1
        value = value.strip("\"'") if value is not None else None
        flag = flag.strip("\"'")
        if value is not None and _TEMPLATED.search(value):
            continue
        if flag in ("-i", "--inventory", "--inventory-file") and value:
            # "-i 127.0.0.1," is a host list; /etc/ansible/hosts or ~/inv is not the repo's: a plan runs only
            # what the repo holds
            if "," not in value and not value.startswith(("/", "~")):
                found["inventory"] = value
        elif flag in ("-t", "--tags") and value:
            tags = tuple(t.strip() for t in value.split(",") if t.strip())
            found["tags"] = tags if all(TAG_RE.match(t) for t in tags) else ()
        elif flag in ("-l", "--limit") and value and LIMIT_RE.match(value):
            found["limit"] = value  # what the repo writes is evidence, never input: odd characters are dropped
        elif value is None and not flag.startswith("-") and flag.endswith((".yml", ".yaml")) and \
                found["playbook"] is None and not _TEMPLATED.search(flag):
            found["playbook"] = flag
    return found


def _resolve(root: Path, bases: list[PurePosixPath], written: str | None, known: set[str] | None) -> str | None:
    """``written`` made repo-relative against each base folder in turn (the command's own folder, a ``cd``
    target, the repo root); the first that names a known playbook (or, without ``known``, exists) wins."""
    if not written or written.startswith(("/", "~")):
        return written
    first = None
    for base in bases:
        candidate = (base / written).as_posix()
        normal = PurePosixPath(*[p for p in PurePosixPath(candidate).parts if p != "."] or ["."]).as_posix()
        if ".." in PurePosixPath(normal).parts:
            continue
        first = first or normal
        if (known is not None and normal in known) or (known is None and (root / normal).exists()):
            return normal
    return written if known is not None else first  # a gitignored inventory: where the command runs it from


def read_commands(root: Path, files: list[str], playbooks: set[str]) -> list[Command]:
    """Every ``ansible-playbook`` invocation in the repo's task-runner files, scripts and READMEs.

    ``files``: absolute paths of the repo's files; ``playbooks``: repo-relative names of its playbooks
    (a command's playbook is resolved against the folder of the file that holds it, a ``cd`` before it,
    then the repo root).
    """
    root = root.resolve()
    found: list[Command] = []
    for path in command_files(root, files):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "ansible-playbook" not in text:
            continue
        here = PurePosixPath(path.parent.relative_to(root).as_posix())
        rel = path.relative_to(root).as_posix()
        for number, line in _joined_lines(text):
            if len(line) > MAX_LINE_CHARS or "ansible-playbook" not in line:
                continue  # no command a person types is longer; and the regexes below stay linear
            for match in _INVOCATION.finditer(line):
                args = parse_invocation(match.group("rest"))
                cd = _CD.search(line[: match.end()])
                bases = [here / cd.group("dir"), PurePosixPath(cd.group("dir"))] if cd else []
                bases += [here, PurePosixPath(".")]
                playbook = _resolve(root, bases, args["playbook"], playbooks)  # type: ignore[arg-type]
                inventory = _resolve(root, bases, args["inventory"], None)  # type: ignore[arg-type]
                if playbook not in playbooks:
                    if not inventory:
                        continue
                    playbook = None  # a playbook gone since the docs were written: its -i still says where
                found.append(Command(f"{rel}:{number}", playbook, inventory, args["tags"],  # type: ignore[arg-type]
                                     args["limit"], " ".join(match.group(0).split())[:300]))  # type: ignore[arg-type]
    return list({(c.playbook, c.inventory, c.tags, c.limit): c for c in found}.values())
