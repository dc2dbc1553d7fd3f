"""The JSON schema an agent's step is decoded under: what the grammar offers a model, tool by tool."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from mcp_types import Tool

from chiffon.servers.tasks.agent import FINAL_TEXT, action_schema, simplify
from chiffon.servers.tasks.roles import Role
from chiffon.servers.tasks.tools import ScopedTools

TOOLS = {
    "repo_read_file": {"type": "object", "properties": {"task_id": {"type": "string"}, "path": {"type": "string"}},
                       "required": ["task_id", "path"]},
    "memory_remember": {"type": "object", "properties": {
        "text": {"type": "string"}, "metadata": {"anyOf": [{"type": "object", "additionalProperties": True},
                                                           {"type": "null"}]}}, "required": ["text"]},
}


class _Box:
    tools = {name: Tool(name=name, description=name, input_schema=schema) for name, schema in TOOLS.items()}


def scoped() -> ScopedTools:
    role = Role(name="r", title="R", description="r", scopes=("repo.read", "memory.write"),
                tools=("repo_read_file", "memory_remember"), prompt="A role for the schema tests, long enough.")
    return ScopedTools(_Box(), role, "task-1", "s", None)  # type: ignore[arg-type]


def valid(schema: dict[str, Any], value: dict[str, Any]) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def test_choices_narrow_a_path_to_the_files_that_exist() -> None:
    schema = action_schema(scoped(), FINAL_TEXT, False, choices={"repo_read_file": {"path": ["notes.md", "a.py"]}})
    assert valid(schema, {"tool": "repo_read_file", "arguments": {"path": "notes.md"}})
    assert not valid(schema, {"tool": "repo_read_file", "arguments": {"path": "/etc/passwd"}})
    assert not valid(schema, {"tool": "repo_read_file", "arguments": {"path": "notes.md", "task_id": "other"}})
    assert valid(schema, {"final": "done"})


def test_a_tool_with_no_choice_left_is_not_offered() -> None:
    schema = action_schema(scoped(), FINAL_TEXT, False, choices={"repo_read_file": {"path": []}})
    assert not valid(schema, {"tool": "repo_read_file", "arguments": {"path": "notes.md"}})
    assert valid(schema, {"tool": "memory_remember", "arguments": {"text": "the greenhouse Pi posts to MQTT"}})


def test_optional_free_form_maps_are_left_out_of_the_grammar() -> None:
    args = simplify(TOOLS["memory_remember"])
    assert set(args["properties"]) == {"text"} and args["additionalProperties"] is False
    assert "metadata" in simplify({**TOOLS["memory_remember"], "required": ["text", "metadata"]})["properties"]


@pytest.mark.parametrize("cap", [None, 40])
def test_strings_are_capped_when_asked(cap: int | None) -> None:
    schema = action_schema(scoped(), FINAL_TEXT, False, cap)
    assert valid(schema, {"final": "x" * 40}) and valid(schema, {"final": "x" * 41}) is (cap is None)
