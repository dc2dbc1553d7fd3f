"""Which extra vars a plan may set: the variables its playbook reads, and never Ansible's own.

Extra vars have the highest precedence in Ansible
(https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_variables.html#variable-precedence-where-should-i-put-a-variable),
so ``-e ansible_shell_executable=...`` or ``-e ansible_connection=...`` would let whoever asks for a
plan run commands on the controller during check mode, before any approval. chiffon therefore
allows a key only when

- it is not Ansible's: no ``ansible_*`` name (connection, become, shell, python and facts all live
  there), no magic or reserved name (:data:`RESERVED`), no keyword that sets connection, become
  or environment behaviour; and
- the playbook reads it: it appears in a Jinja expression or a condition of the playbook, the roles
  and task files it applies, or the templates they render; or it is a play or role default
  variable; or the operator lists it in ``ansible.allowed_extra_vars``.

Values still reach Ansible tagged ``!unsafe`` (never templated); see :mod:`servers.ansible.unsafe_yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from chiffon.servers.ansible.catalog import Catalog, Playbook
from chiffon.shared.errors import InvalidInput

MAX_EXTRA_VARS_BYTES = 64 * 1024
# Ansible's magic variables (besides every ansible_* one) and play keywords that change how and where tasks run
# (https://docs.ansible.com/ansible/latest/reference_appendices/special_variables.html,
#  https://docs.ansible.com/ansible/latest/reference_appendices/playbooks_keywords.html).
RESERVED = frozenset("""
hostvars groups group_names inventory_hostname inventory_hostname_short inventory_dir inventory_file
omit playbook_dir play_hosts role_name role_names role_path role_uuid environment vars
become become_user become_method become_flags become_exe connection remote_user port timeout
delegate_to delegate_facts run_once serial strategy any_errors_fatal max_fail_percentage
no_log check_mode diff gather_facts gather_subset module_defaults collections debugger throttle
item lookup query q undef
""".split())
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JINJA = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_IDENT = re.compile(r"(?<![.\w'\"])([A-Za-z_][A-Za-z0-9_]*)")
_CONDITION_KEYS = ("when", "changed_when", "failed_when", "until", "that", "loop", "with_items")
TEXT_SUFFIXES = (".yml", ".yaml", ".j2", ".jinja", ".jinja2", ".json", ".conf", ".cfg", ".ini", ".tmpl", ".toml")


def is_reserved(name: str) -> bool:
    """True for Ansible's own names: ``ansible_*`` and :data:`RESERVED`."""
    return name.startswith("ansible_") or name in RESERVED


_JINJA_WORDS = frozenset("""
for endfor if elif else endif set endset in not and or is true false none True False None loop block endblock
macro endmacro with endwith raw endraw include import from as recursive filter endfilter call endcall do break
continue range dict lipsum cycler joiner namespace _
""".split())


def expression_variables(expression: str) -> list[str]:
    """Variable names an expression reads, in order of appearance: not strings, filters (``| default``), tests
    (``is defined``), keyword arguments, attributes (``x.y`` yields ``x``) or Jinja's own words
    (``jellyfin_enabled | default(false)`` -> ``['jellyfin_enabled']``)."""
    stripped = re.sub(r"(['\"]).*?\1", " ", expression)
    stripped = re.sub(r"\|\s*[A-Za-z_][\w.]*", " ", stripped)
    stripped = re.sub(r"\bis\s+(?:not\s+)?[A-Za-z_]\w*", " ", stripped)
    stripped = re.sub(r"([(,]\s*)[A-Za-z_]\w*\s*=(?!=)", r"\1", stripped)  # keyword arguments: map(attribute=...)
    return list(dict.fromkeys(m for m in _IDENT.findall(stripped) if m not in _JINJA_WORDS))


def _conditions(data: Any) -> Iterable[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _CONDITION_KEYS and isinstance(value, (str, list)):
                yield from ([value] if isinstance(value, str) else [str(v) for v in value])
            yield from _conditions(value)
    elif isinstance(data, list):
        for item in data:
            yield from _conditions(item)


def _defaults(data: Any) -> set[str]:
    return {str(k) for k in data} if isinstance(data, dict) else set()


def text_variables(text: str) -> set[str]:
    """Identifiers read by the Jinja expressions of ``text`` and, when it is YAML, by its conditions."""
    names: set[str] = set()
    for match in _JINJA.finditer(text):
        names.update(expression_variables(match.group(1) or match.group(2) or ""))
    try:
        data = yaml.safe_load(text) if "when" in text or "until" in text or "that" in text else None
    except yaml.YAMLError:
        data = None
    for condition in _conditions(data):
        names.update(expression_variables(condition))
    return names


def _files_of(catalog: Catalog, playbook: Playbook) -> list[Path]:
    """The playbook, the roles and task files it applies (all their text files), and the templates beside the
    playbook that those name (``src: templates/uptime-kuma/compose.yaml.j2``)."""
    root = catalog.root.resolve()
    files = [playbook.path]
    for unit in catalog.units:
        if unit.playbook is not playbook:
            continue
        if unit.role is not None:
            files += [p for p in (catalog.root / unit.role.path).rglob("*") if p.suffix in TEXT_SUFFIXES]
        if unit.kind == "tasks":
            files.append(catalog.root / unit.source)
    files = [p for p in dict.fromkeys(files) if p.is_file() and p.resolve().is_relative_to(root)]
    named = "\n".join(p.read_text(errors="replace") for p in files)
    for folder in ("templates", "files"):
        base = playbook.path.parent / folder
        for path in base.rglob("*") if base.is_dir() else ():
            if path.suffix in TEXT_SUFFIXES and path.is_file() and path.resolve().is_relative_to(root) and (
                    path.relative_to(base).as_posix() in named):
                files.append(path)
    return files


def referenced_variables(catalog: Catalog, playbook: Playbook) -> set[str]:
    """Every variable name the playbook and what it applies read or define as a default."""
    names = set(playbook.variables) | set(playbook.prompts)
    for unit in catalog.units:
        if unit.playbook is playbook and unit.role is not None:
            names |= set(unit.role.variables)
    for path in _files_of(catalog, playbook):
        names |= text_variables(path.read_text(errors="replace"))
    return names


def validate_extra_vars(catalog: Catalog, playbook: Playbook, extra_vars: dict[str, Any] | None,
                        allowed: Iterable[str] = ()) -> dict[str, Any]:
    """``extra_vars`` checked against what the playbook reads (see the module docstring).

    Raises:
        InvalidInput: a key that is not a variable name, one of Ansible's own names, or one the playbook never
            reads (the variables it does read are listed); or more than 64 KiB of YAML.
    """
    extra_vars = extra_vars or {}
    allowed = set(allowed)
    referenced: set[str] | None = None
    for key in extra_vars:
        if not isinstance(key, str) or not _NAME.match(key):
            raise InvalidInput("extra_vars", f"{key!r} is not a valid variable name (letters, digits, _)")
        if is_reserved(key):
            raise InvalidInput("extra_vars", f"{key!r} is one of Ansible's own variables (connection, become, shell "
                                             "or magic); chiffon never lets a request set it")
        if key in allowed:
            continue
        if referenced is None:
            referenced = referenced_variables(catalog, playbook)
        if key not in referenced:
            usable = sorted(n for n in referenced if not is_reserved(n))
            shown = ", ".join(usable[:40]) + (" ..." if len(usable) > 40 else "")
            raise InvalidInput("extra_vars", f"{key!r} is not a variable {playbook.name} reads; it reads: "
                                             f"{shown or 'none'} (an operator can allow more with "
                                             "ansible.allowed_extra_vars)")
    if len(yaml.safe_dump(extra_vars)) > MAX_EXTRA_VARS_BYTES:
        raise InvalidInput("extra_vars", f"larger than {MAX_EXTRA_VARS_BYTES} bytes")
    return extra_vars
