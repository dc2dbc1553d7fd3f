"""Improvement suggestions for a playbook: ansible-lint findings plus chiffon's own.

chiffon's rules look at what matters for running a homelab through an agent:

* ``portal-without-monitor``: a portal in the inventory's ``portals`` list that no
  monitoring playbook will watch (marked ``monitor: false``, or no playbook in the
  repo renders monitors from ``portals``);
* ``missing-description``: no one-line description comment, so requests match it poorly;
* ``untagged-play``: a play without tags cannot be run partially;
* ``command-without-changed-when``: ``command``/``shell`` without ``changed_when`` or
  ``creates``/``removes`` reports a change on every run and hides real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from chiffon.servers.ansible.catalog import Catalog, Playbook
from chiffon.servers.ansible.risk import COMMAND_MODULES


class Finding(BaseModel):
    """One suggestion."""

    source: str = Field(description="ansible-lint or chiffon.")
    rule: str = Field(description="Rule id, e.g. name[casing] or portal-without-monitor.")
    severity: str = Field(description="info, minor, major or critical.")
    message: str
    path: str | None = None
    line: int | None = None


def chiffon_findings(catalog: Catalog, playbook: Playbook) -> list[Finding]:
    """chiffon's own rules (see the module docstring) for ``playbook``."""
    found: list[Finding] = []
    if not playbook.description:
        found.append(Finding(source="chiffon", rule="missing-description", severity="minor", path=playbook.name,
                             message="add a one-line '# ...' description at the top so plain-language requests find it"))
    if not playbook.tags:
        found.append(Finding(source="chiffon", rule="untagged-play", severity="info", path=playbook.name,
                             message="tag the play so it can be run or skipped with --tags"))
    for task in playbook.tasks:
        if task.module in COMMAND_MODULES and not ({"changed_when"} & task.keywords) \
                and not ({"creates", "removes"} & set(task.args)):
            found.append(Finding(source="chiffon", rule="command-without-changed-when", severity="major",
                                 path=playbook.name, message=f"task {task.name!r}: add changed_when, creates or removes"))
    if "portals" in playbook.path.read_text(errors="replace"):
        found.extend(_unmonitored_portals(catalog))
    return found


def _unmonitored_portals(catalog: Catalog) -> list[Finding]:
    texts = [pb.path.read_text(errors="replace") for pb in catalog.playbooks.values()]
    monitoring = [text for text in texts if "monitor" in text and "portals" in text]
    seen: dict[str, dict[str, Any]] = {}
    for host in catalog.groups().get("all", []):
        for portal in catalog.hostvars(host).get("portals") or []:
            if isinstance(portal, dict) and portal.get("name"):
                seen.setdefault(str(portal["name"]), portal)
    found = []
    for name, portal in seen.items():
        if not monitoring or portal.get("monitor") is False:
            why = "it is marked monitor: false" if monitoring else "no playbook renders monitors from `portals`"
            found.append(Finding(source="chiffon", rule="portal-without-monitor", severity="major",
                                 message=f"portal {name!r} ({portal.get('url', '?')}) has no monitor: {why}"))
    return found


def lint_findings(catalog: Catalog, playbook: Playbook, timeout_s: int = 180) -> list[Finding]:
    """ansible-lint's findings (offline, codeclimate JSON) for ``playbook``."""
    binary = Path(sys.executable).with_name("ansible-lint")
    env = {**os.environ, "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    try:
        proc = subprocess.run(
            [str(binary), "--offline", "--nocolor", "-q", "-f", "codeclimate", playbook.name],
            cwd=catalog.root, capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding(source="ansible-lint", rule="lint-not-run", severity="info", message=f"ansible-lint did not run: {exc}")]
    try:
        items = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return [Finding(source="ansible-lint", rule="lint-not-run", severity="info",
                        message=f"ansible-lint gave no JSON: {proc.stderr.strip()[-400:]}")]
    return [
        Finding(source="ansible-lint", rule=i.get("check_name", "?"), severity=i.get("severity", "minor"),
                message=i.get("description", ""), path=i.get("location", {}).get("path"),
                line=(i.get("location", {}).get("lines") or {}).get("begin"))
        for i in items
    ]
