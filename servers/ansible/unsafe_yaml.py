"""YAML for Ansible in which what a user or a model typed is never templated: every such string is tagged
``!unsafe`` (https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_advanced_syntax.html#unsafe-or-raw-strings),
so ``{{ lookup('pipe', 'id') }}`` reaches the playbook as that literal text."""

from __future__ import annotations

from typing import Any

import yaml


class _Unsafe(str):
    """A string dumped with Ansible's ``!unsafe`` tag."""


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(_Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v)))


def _mark_unsafe(value: Any) -> Any:
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, dict):
        return {str(k): _mark_unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_unsafe(v) for v in value]
    return value


def unsafe_extra_vars_yaml(extra_vars: dict[str, Any]) -> str:
    """YAML for ``-e @file`` with every string tagged ``!unsafe`` (never templated)."""
    return yaml.dump(_mark_unsafe(extra_vars), Dumper=_UnsafeDumper, sort_keys=True)


def unsafe_text(text: str) -> str:
    """``text`` marked so :func:`unsafe_yaml` tags it ``!unsafe`` (Ansible reads it literally)."""
    return _Unsafe(text)


def unsafe_yaml(data: Any) -> str:
    """YAML of ``data`` where only the strings made by :func:`unsafe_text` are tagged ``!unsafe``."""
    return yaml.dump(data, Dumper=_UnsafeDumper, sort_keys=False)
