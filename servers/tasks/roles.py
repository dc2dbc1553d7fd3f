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
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.config import PROJECT_ROOT, TIER_NAMES
from shared.errors import ConfigError, NotFound

ROLES_DIR = PROJECT_ROOT / "prompts" / "roles"
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
    "infra.plan": ("plan_request", "ansible_check", "ansible_new_playbook"),
    "infra.run": ("execute_plan", "ansible_run"),  # always behind a human approval
}
APPROVAL_SCOPES = frozenset({"infra.run"})
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.DOTALL)
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}$")


class Role(BaseModel):
    """One role: who it is, what it may touch, and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The file stem, e.g. developer.")
    title: str = Field(min_length=1, max_length=80)
    description: str = Field(min_length=1, max_length=500)
    scopes: tuple[str, ...] = Field(description="Tool scopes granted (keys of SCOPES).")
    tier: str = Field("local", description="LLM tier the role's agent asks first.")
    max_steps: int = Field(10, ge=1, le=100, description="Most LLM steps (tool calls and answers) per task.")
    max_tokens: int = Field(8000, ge=256, le=200_000, description="Most completion tokens per task, all steps.")
    critic: str | None = Field(None, description="Role that reviews this role's output (producer-critic).")
    max_rounds: int = Field(3, ge=1, le=10, description="Producer-critic rounds before escalating to a human.")
    prompt: str = Field(min_length=20, description="The role prompt (the file's body).")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        return value

    @field_validator("tier")
    @classmethod
    def _known_tier(cls, value: str) -> str:
        if value not in TIER_NAMES:
            raise ValueError(f"{value!r} is not one of {', '.join(TIER_NAMES)}")
        return value

    def allows(self, tool: str) -> bool:
        """Whether a tool named ``tool`` (as mounted in the orchestrator) is in this role's scopes."""
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


def get_role(roles: dict[str, Role], name: str) -> Role:
    """The role ``name``. Raises NotFound listing the roles (and ``pipeline``)."""
    if name not in roles:
        raise NotFound(f"unknown role {name!r}; roles: {', '.join([*sorted(roles), PIPELINE])}")
    return roles[name]
