"""Role files: front matter validated at load, scopes decide which tools an agent may call."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.servers.tasks.roles import ROLES_DIR, SCOPES, get_role, load_roles, parse_role
from chiffon.shared.errors import ConfigError, NotFound

ROLE = """---
title: Tester
description: A role for tests.
scopes: [{scopes}]
{extra}---
You are a role used by the tests, with a prompt long enough to pass validation.
"""


def write(tmp_path: Path, name: str = "tester", extra: str = "", text: str | None = None,
          scopes: str = "memory.read") -> Path:
    path = tmp_path / f"{name}.md"
    path.write_text(text if text is not None else ROLE.format(extra=extra, scopes=scopes))
    return path


def test_the_shipped_roles_load_with_their_critics() -> None:
    roles = load_roles()
    assert set(roles) == {"product-manager", "architect-knowledge", "architect-systems", "developer", "qa",
                          "ux-researcher", "platform-engineer"}
    assert roles["developer"].critic == "qa" and roles["architect-systems"].critic == "platform-engineer"
    assert all(len(r.prompt) > 100 for r in roles.values())
    assert (ROLES_DIR.parent / "prp.md").read_text().count("## ") >= 4


def test_scopes_decide_tools_and_machine_changes_need_approval() -> None:
    roles = load_roles()
    assert not roles["developer"].allows("ansible_run") and roles["developer"].allows("repo_write_file")
    assert not roles["qa"].allows("repo_write_file") and roles["qa"].allows("repo_run_tests")
    assert roles["platform-engineer"].allows("ansible_run") and roles["platform-engineer"].needs_approval("ansible_run")
    assert not roles["platform-engineer"].needs_approval("ansible_check")
    every_tool = {t for patterns in SCOPES.values() for t in patterns}
    assert {t for t in every_tool if roles["product-manager"].allows(t)} == set(SCOPES["memory.read"]) | set(
        SCOPES["memory.write"]) | set(SCOPES["repo.read"])


@pytest.mark.parametrize(("scopes", "extra", "needle"), [
    ("memory.read, root.shell", "", "scopes: Value error, unknown scope(s) root.shell"),
    ("memory.read", "tier: huge\n", "tier: Value error, 'huge' is not one of quick"),
    ("memory.read", "max_steps: 0\n", "max_steps"),
    ("memory.read", "colour: red\n", "colour: Extra inputs are not permitted"),
])
def test_bad_front_matter_names_the_file_and_field(tmp_path: Path, scopes: str, extra: str, needle: str) -> None:
    path = write(tmp_path, extra=extra, scopes=scopes)
    with pytest.raises(ConfigError) as info:
        parse_role(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_missing_front_matter_bad_yaml_and_unknown_critic_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no front matter"):
        parse_role(write(tmp_path, "plain", text="You are a role without front matter at all, which is refused."))
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_role(write(tmp_path, "broken", text="---\ndescription: a: b: c\n---\nprompt text that is long enough\n"))
    roles_dir = tmp_path / "roles"
    roles_dir.mkdir()
    write(roles_dir, extra="critic: nobody\n")
    with pytest.raises(ConfigError, match=r"critic: 'nobody' is not a role"):
        load_roles(roles_dir)


def test_unknown_role_lists_the_roles() -> None:
    with pytest.raises(NotFound, match="roles: architect-knowledge.*pipeline"):
        get_role(load_roles(), "wizard")


def test_a_role_can_narrow_its_scopes_to_named_tools(tmp_path: Path) -> None:
    role = parse_role(write(tmp_path, extra="tools: [memory_recall]\n", scopes="memory.read, repo.read"))
    assert role.allows("memory_recall") and not role.allows("memory_history") and not role.allows("repo_read_file")
    with pytest.raises(ConfigError, match="repo_write_file are outside the role's scopes"):
        parse_role(write(tmp_path, extra="tools: [repo_write_file]\n", scopes="repo.read"))
