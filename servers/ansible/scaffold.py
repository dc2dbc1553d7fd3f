"""New playbooks from templates, validated with ``ansible-playbook --syntax-check``.

Templates live in ``servers/ansible/templates``: ``service`` (deploy a service
with Docker Compose) and ``config`` (update a service's configuration file).
"""

from __future__ import annotations

import re
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from servers.ansible.catalog import Catalog
from shared.errors import InvalidInput

TEMPLATES = Path(__file__).parent / "templates"
Kind = Literal["service", "config"]
_SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


class NewPlaybook(BaseModel):
    """A generated playbook."""

    path: str = Field(description="Path relative to the repo where it is (or would be) written.")
    content: str = Field(description="The playbook YAML.")
    syntax_ok: bool = Field(description="ansible-playbook --syntax-check passed.")
    syntax_output: str = Field(description="What the syntax check printed (errors, if any).")
    written: bool = Field(description="True when the file was written to the repo.")


def render(kind: Kind, service: str, host: str) -> str:
    """The template for ``kind`` filled with ``service`` and ``host``."""
    template = string.Template((TEMPLATES / f"{kind}.yml.tmpl").read_text())
    return template.substitute(service=service, host=host, var=service.replace("-", "_"))


def syntax_check(catalog: Catalog, content: str) -> tuple[bool, str]:
    """Run ``ansible-playbook --syntax-check`` on ``content`` placed at the repo root."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=catalog.root, prefix=".chiffon-new-", delete=False) as f:
        f.write(content)
        tmp = Path(f.name)
    try:
        proc = subprocess.run(  # noqa: S603
            [str(Path(sys.executable).with_name("ansible-playbook")), "--syntax-check", "-i",
             str(catalog.inventory_path), tmp.name],
            cwd=catalog.root, capture_output=True, text=True, timeout=120, check=False,
        )
    finally:
        tmp.unlink(missing_ok=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-2000:]


def new_playbook(catalog: Catalog, kind: str, service: str, host: str, *, write: bool = False) -> NewPlaybook:
    """Generate a playbook; write it into the repo only when ``write`` and the syntax check passes.

    Raises:
        InvalidInput: unknown kind, a service name that is not lower-case-with-dashes, an unknown
            host or group, or (with ``write``) a file that already exists.
    """
    if kind not in ("service", "config"):
        raise InvalidInput("kind", f"{kind!r} is not one of: service, config")
    if not _SERVICE_RE.match(service):
        raise InvalidInput("service", "use lower-case letters, digits and dashes (e.g. uptime-kuma)")
    groups = catalog.groups()
    known = set(groups) | {h for hosts in groups.values() for h in hosts}
    if host not in known:
        raise InvalidInput("host", f"{host!r} is not a host or group of {catalog.inventory}; known: {', '.join(sorted(known))}")
    name = f"{'deploy' if kind == 'service' else 'configure'}-{service}.yml"
    content = render(kind, service, host)
    ok, output = syntax_check(catalog, content)
    written = False
    if write:
        target = catalog.root / name
        if target.exists():
            raise InvalidInput("service", f"{name} already exists in {catalog.root}; edit it instead")
        if ok:
            target.write_text(content)
            written = True
    return NewPlaybook(path=name, content=content, syntax_ok=ok, syntax_output=output, written=written)
