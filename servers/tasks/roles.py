"""Role agents as files: ``prompts/roles/<name>.md`` is YAML front matter plus the role prompt.

    ---
    title: Developer
    description: Changes code in a git worktree branch of the target repo.
    scopes: [memory.read, memory.write, repo.read, repo.write, repo.test]
    tier: local
    max_steps: 12
    max_tokens: 6000
    critic: qa
    ---
    You are the developer of a homelab agency...

``scopes`` name groups of MCP tools (:data:`SCOPES`); an agent sees and may call
only the tools its scopes grant, checked where tools are dispatched. Tools that
change a machine (``infra.run``) still need a recorded human approval, whatever
the role. A file with bad front matter is refused at load with the file and the
field named.

``test_commands`` lists the commands a role with ``repo.test`` may run through
``repo_run_tests`` (the first is the default). A task's ``inputs.test_command``
must be one of them, optionally followed by test selectors (relative paths such
as ``tests/test_x.py::test_y``); anything else is refused when the task is
submitted, so neither a model nor a submitter picks an arbitrary program.
"""

from __future__ import annotations

import re
import shlex
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chiffon.shared.config import TIER_NAMES
from chiffon.shared.errors import ConfigError, InvalidInput, NotFound
from chiffon.shared.resources import prompt_path

ROLES_DIR = prompt_path("roles")
PIPELINE = "pipeline"  # not a file: PM -> architect -> developer -> QA (submit_task role "pipeline")

# Scope -> tool-name patterns as the orchestrator mounts them (ansible_*, memory_*, ...).
SCOPES: dict[str, tuple[str, ...]] = {
    "memory.read": ("memory_recall", "memory_history", "memory_search_code", "memory_collections"),
    "memory.write": ("memory_remember", "memory_append_message"),
    "repo.read": ("repo_list_files", "repo_read_file", "repo_search"),
    "repo.write": ("repo_write_file",),
    "repo.test": ("repo_run_tests",),
    "infra.read": ("ansible_list_playbooks", "ansible_describe_playbook", "ansible_inventory",
                   "ansible_find_playbooks", "ansible_run_events", "ansible_suggest_improvements", "plan_status",
                   "audit_query"),
    "infra.plan": ("plan_request", "ansible_check", "ansible_new_playbook", "ansible_undo_run"),
    "infra.run": ("execute_plan", "ansible_run"),  # always behind a human approval
}
APPROVAL_SCOPES = frozenset({"infra.run"})
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.DOTALL)
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
# A test selector after an allowed command: a relative path, maybe with ::node ids and [params]; no options.
_SELECTOR = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./:\[\]-]{0,300}$")
PIPELINE_TESTERS = ("developer", "qa")  # the pipeline's roles that run the tests


class Role(BaseModel):
    """One role: who it is, what it may touch, and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The file stem, e.g. developer.")
    title: str = Field(min_length=1, max_length=80)
    description: str = Field(min_length=1, max_length=500)
    scopes: tuple[str, ...] = Field(description="Tool scopes granted (keys of SCOPES).")
    tools: tuple[str, ...] = Field((), description="Only these tools of the scopes (empty: all of them). Least "
                                                   "privilege, and fewer wrong turns for a small local model.")
    tier: str = Field("local", description="LLM tier the role's agent asks first.")
    max_steps: int = Field(10, ge=1, le=100, description="Most LLM steps (tool calls and answers) per task.")
    max_tokens: int = Field(8000, ge=256, le=200_000, description="Most completion tokens per task, all steps.")
    critic: str | None = Field(None, description="Role that reviews this role's output (producer-critic).")
    max_rounds: int = Field(3, ge=1, le=10, description="Producer-critic rounds before escalating to a human.")
    test_commands: tuple[str, ...] = Field((), description="Commands repo_run_tests may run (first: default).")
    prompt: str = Field(min_length=20, description="The role prompt (the file's body).")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        return value

    @model_validator(mode="after")
    def _tools_in_scopes(self) -> Role:
        outside = [t for t in self.tools
                   if not any(fnmatch(t, p) for scope in self.scopes for p in SCOPES[scope])]
        if outside:
            raise ValueError(f"tools {', '.join(outside)} are outside the role's scopes ({', '.join(self.scopes)})")
        return self

    @field_validator("tier")
    @classmethod
    def _known_tier(cls, value: str) -> str:
        if value not in TIER_NAMES:
            raise ValueError(f"{value!r} is not one of {', '.join(TIER_NAMES)}")
        return value

    @field_validator("test_commands")
    @classmethod
    def _parsable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for command in value:
            try:
                if not shlex.split(command):
                    raise ValueError("an empty test command")
            except ValueError as exc:
                raise ValueError(f"{command!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _tests_need_commands(self) -> Role:
        if "repo.test" in self.scopes and not self.test_commands:
            raise ValueError("the repo.test scope needs test_commands: the commands repo_run_tests may run")
        return self

    def allows(self, tool: str) -> bool:
        """Whether a tool named ``tool`` (as mounted in the orchestrator) is in this role's scopes (and in its
        ``tools``, when it names some)."""
        if self.tools and tool not in self.tools:
            return False
        return any(fnmatch(tool, pattern) for scope in self.scopes for pattern in SCOPES[scope])

    def needs_approval(self, tool: str) -> bool:
        """Whether calling ``tool`` changes a machine, so a human must approve first (any role)."""
        return any(fnmatch(tool, p) for scope in APPROVAL_SCOPES for p in SCOPES[scope])

    def summary(self) -> dict[str, Any]:
        """JSON-ready: everything but the prompt."""
        return self.model_dump(exclude={"prompt"})


def parse_role(path: Path) -> Role:
    """Read one role file.

    Raises:
        ConfigError: no front matter, YAML errors, unknown or invalid fields; the message names the file and field.
    """
    name = path.stem
    if not _NAME.match(name):
        raise ConfigError(f"{path}: the file name must be a lower-case role name like developer.md")
    text = path.read_text(encoding="utf-8")
    found = _FRONT_MATTER.match(text)
    if not found:
        raise ConfigError(f"{path}: no front matter; start the file with a '---' YAML block and end it with '---'")
    try:
        meta = yaml.safe_load(found.group(1)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: front matter must be a mapping of fields")
    try:
        return Role.model_validate({**meta, "name": name, "prompt": found.group(2).strip()})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc


def load_roles(directory: Path = ROLES_DIR) -> dict[str, Role]:
    """Every ``*.md`` role in ``directory``, by name.

    Raises:
        ConfigError: a bad role file (see :func:`parse_role`), or a critic that is not a role.
    """
    roles = {r.name: r for r in (parse_role(p) for p in sorted(directory.glob("*.md")))}
    for role in roles.values():
        if role.critic is not None and role.critic not in roles:
            raise ConfigError(f"{directory / (role.name + '.md')}: critic: {role.critic!r} is not a role "
                              f"({', '.join(sorted(roles))})")
    return roles


def allowed_test_command(role: Role, requested: str | None) -> str:
    """The command ``role`` runs for ``repo_run_tests``: ``requested`` when the role allows it, else its default.

    ``requested`` must start with one of ``role.test_commands`` (compared word by word after shell-style
    splitting) and may add only test selectors: relative paths without ``..``, node ids and parameters.

    Raises:
        InvalidInput: the role has no test commands, or ``requested`` is not one of them (they are listed).
    """
    if not role.test_commands:
        raise InvalidInput("test_command", f"role {role.name} runs no tests (no test_commands in its file)")
    if requested is None or not str(requested).strip():
        return role.test_commands[0]
    try:
        argv = shlex.split(str(requested))
    except ValueError as exc:
        raise InvalidInput("test_command", f"cannot be split into words: {exc}") from exc
    for allowed in role.test_commands:
        head = shlex.split(allowed)
        extra = argv[len(head):]
        if argv[:len(head)] == head and all(_SELECTOR.match(a) and ".." not in a.split("/") for a in extra):
            return shlex.join(argv)
    raise InvalidInput("test_command", f"{requested!r} is not a test command role {role.name} may run; allowed: "
                       f"{'; '.join(role.test_commands)}, each optionally followed by test paths "
                       f"(set test_commands in prompts/roles/{role.name}.md to allow another)")


def check_task_inputs(roles: dict[str, Role], role: str, inputs: dict[str, Any] | None) -> None:
    """Refuse a task whose ``inputs.test_command`` its role (or each tester of the pipeline) may not run.

    Raises:
        InvalidInput: see :func:`allowed_test_command`; a non-string test_command.
    """
    requested = (inputs or {}).get("test_command")
    if requested is None:
        return
    if not isinstance(requested, str):
        raise InvalidInput("test_command", "must be a string such as 'python -m pytest -q'")
    testers = [roles[n] for n in PIPELINE_TESTERS if n in roles] if role == PIPELINE else \
        [roles[role]] if role in roles and roles[role].test_commands else []
    for tester in testers:
        allowed_test_command(tester, requested)


def get_role(roles: dict[str, Role], name: str) -> Role:
    """The role ``name``. Raises NotFound listing the roles (and ``pipeline``)."""
    if name not in roles:
        raise NotFound(f"unknown role {name!r}; roles: {', '.join([*sorted(roles), PIPELINE])}")
    return roles[name]
