"""One request object from the edge to the plan: :class:`PlanRequest`.

The MCP tools (``plan_request``, ``check``), ``chiffon run``, the console's request box and ``POST
/api/v1/plans`` each build one :class:`PlanRequest` from what they were given and pass it down, through
:func:`chiffon.orchestrator.planner.plan_request` to :func:`chiffon.servers.ansible.plans.create_plan`, instead
of relaying a dozen keyword arguments. Its checks live here, on the model:

* shape, before anything reads the repo (:func:`limit_shape`, :func:`tag_names`, :func:`inventory_inside`: the
  REST body applies them as field validators, so a bad field is a 422 naming it);
* the request text (:meth:`PlanRequest.text`) and the ``apply_role``/``apply_to`` pair
  (:meth:`PlanRequest.role_to_apply`);
* against the repo (:meth:`PlanRequest.checked`): tags and skip_tags that the playbook carries, a ``--limit`` of
  known hosts or groups, extra vars the playbook reads (never templated).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from chiffon.servers.ansible import matching, preview, variables
from chiffon.servers.ansible.plays import LIMIT_RE
from chiffon.shared.errors import InvalidInput

if TYPE_CHECKING:
    from chiffon.servers.ansible.catalog import Catalog, Playbook

INVENTORY = r"^[A-Za-z0-9_][A-Za-z0-9_.,/-]{0,199}$"
"""An inventory as a client may name it: a name or a repo-relative path (never absolute; ``..`` is refused too)."""
TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"
"""A tag name as a client may send it."""


class PlanRequest(BaseModel):
    """What to plan: the plain-language request and, optionally, where and what to run.

    ``repo`` and ``inventory`` choose the catalog and ``apply_role``/``apply_to`` a generated playbook (the
    planner resolves them); the rest reaches the check-mode run and the stored plan.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: str | None = Field(None, description="What should happen, e.g. 'Deploy Uptime Kuma'; None for a "
                                                  "playbook checked by name (the check tool).")
    repo: Path | None = Field(None, description="The IaC repo; None: the service's own.")
    inventory: str | None = Field(None, description="Inventory name (prod, local) or path in the repo; None: the "
                                                    "service's, else the one ansible.cfg names.")
    limit: str | None = Field(None, description="--limit host/group pattern.")
    tags: list[str] | None = Field(None, description="--tags of the playbook; None: the matched unit's own.")
    skip_tags: list[str] | None = Field(None, description="--skip-tags: tags of the playbook not to run.")
    extra_vars: dict[str, Any] | None = Field(None, description="Extra vars; passed literally, never templated.")
    secret_vars: list[str] | None = Field(None, description="Extra var names whose values are secrets (names like "
                                                            "*_password already are): never stored or shown.")
    apply_role: str | None = Field(None, description="Plan a generated playbook applying this role, one no "
                                                     "playbook applies (needs apply_to).")
    apply_to: str | None = Field(None, description="Inventory host or group for apply_role.")

    def text(self) -> str:
        """The request text, stripped and bounded. Raises InvalidInput: empty or over-long."""
        return matching.validate_request(self.request or "")

    def role_to_apply(self) -> tuple[str, str] | None:
        """``(apply_role, apply_to)`` when a generated playbook is asked for, else None.

        Raises:
            InvalidInput: only one of the two is given.
        """
        if self.apply_role is None and self.apply_to is None:
            return None
        if not (self.apply_role and self.apply_to):
            raise InvalidInput("apply_to" if self.apply_role else "apply_role",
                               "give both the role and the host or group to apply it to")
        return self.apply_role, self.apply_to

    def checked(self, catalog: Catalog, playbook: Playbook, *, allowed_extra_vars: Iterable[str] = (),
                generated: bool = False) -> PlanRequest:
        """This request with its run inputs checked against the repo, in this order: ``tags`` (none for a
        ``generated`` playbook, which applies its role whole), ``skip_tags`` (each a tag of ``playbook``), ``limit``
        (characters, and known hosts or groups of the catalog's inventory), ``extra_vars`` (names the playbook
        reads, or ``allowed_extra_vars``; values never templated). Tags come back deduplicated, lists never None.

        Raises:
            InvalidInput: the field at fault and what is allowed; nothing is run or stored.
        """
        tags = [] if generated else preview.validate_tags(catalog, playbook, self.tags, "tags")
        skip_tags = preview.validate_tags(catalog, playbook, self.skip_tags, "skip_tags")
        limit = catalog.validate_limit(self.limit)
        extra_vars = variables.validate_extra_vars(catalog, playbook, self.extra_vars, allowed_extra_vars)
        return self.model_copy(update={"tags": tags, "skip_tags": skip_tags, "limit": limit,
                                       "extra_vars": extra_vars, "secret_vars": list(self.secret_vars or [])})


def limit_shape(value: str | None) -> str | None:
    """``value`` when it uses only the characters of an Ansible host pattern. Raises ValueError."""
    if value is not None and not LIMIT_RE.match(value):
        raise ValueError("may contain only host/group names, ',', ':', '!', '&', '*', '[', ']'")
    return value


def tag_names(values: list[str] | None) -> list[str] | None:
    """``values`` when each is a tag name (letters, digits, '_', '.', ':', '-'). Raises ValueError."""
    bad = [t for t in values or [] if not re.match(TAG, t)]
    if bad:
        raise ValueError(f"{bad[0][:64]!r} is not a tag name (letters, digits, '_', '.', ':', '-')")
    return values


def inventory_inside(value: str | None) -> str | None:
    """``value`` when it is a name or a path inside the repo (no ``..``). Raises ValueError."""
    if value is not None and ".." in value.split("/"):
        raise ValueError("must be a name or a path inside the repo, without '..'")
    return value
