"""What REST clients send and what they get back on an error: pydantic models, so FastAPI validates every input
before a handler runs and writes the OpenAPI schema from the same code.

Every string a client sends is bounded; identifiers are matched against their patterns; the ``inventory`` is a
name or a repo-relative path (never absolute, never ``..``); ``limit`` uses the characters of an Ansible host
pattern only (those checks are :class:`~chiffon.servers.ansible.request.PlanRequest`'s, applied here as field
validators). :meth:`PlanBody.plan_request` turns the body into that one request object, which the planner
validates again against the repo itself (known inventories, hosts, groups and tags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chiffon.servers.ansible.matching import MAX_REQUEST_CHARS
from chiffon.servers.ansible.request import INVENTORY, PlanRequest, inventory_inside, limit_shape, tag_names

PLAN_ID = r"^plan-[0-9a-f]{10}$"
"""A plan id: ``plan-`` and 10 hex digits (:func:`chiffon.servers.ansible.plans.new_id`)."""
RUN_OR_PLAN_ID = r"^(plan|run)-[0-9a-f]{10}$"
"""A run id (``run-`` and 10 hex digits) or the id of the plan it runs."""
CODE = r"^[0-9]{6}$"
MAX_TAGS = 20
MAX_REASON = 500
MAX_REPO = 1024

PlanStatusName = Literal["pending_approval", "approved", "paused", "rejected", "running", "succeeded", "failed",
                         "expired"]


class PlanBody(BaseModel):
    """``POST /api/v1/plans``: a plain-language request and, optionally, where and what to run."""

    model_config = ConfigDict(extra="forbid")

    request: str = Field(min_length=1, max_length=MAX_REQUEST_CHARS,
                         description="What should happen, e.g. 'Deploy Uptime Kuma and add the existing portals'.")
    repo: str | None = Field(None, min_length=1, max_length=MAX_REPO,
                             description="The IaC repo's path: only the repo this server plans against "
                                         "(`chiffon serve --repo`, CHIFFON_REPO) is accepted; omit it to use that.")
    inventory: str | None = Field(None, pattern=INVENTORY,
                                  description="Inventory name (prod, local) or path inside the repo; default: the "
                                              "one ansible.cfg names.")
    limit: str | None = Field(None, min_length=1, max_length=200,
                              description="--limit host/group pattern (names, ',', ':', '!', '&', '*', '[', ']').")
    tags: list[str] | None = Field(None, max_length=MAX_TAGS,
                                   description="--tags of the matched playbook instead of the unit's own; each must "
                                               "be a tag the playbook uses.")

    @field_validator("request")
    @classmethod
    def _request_has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; say what should happen, e.g. 'Deploy Redis on east'")
        return value

    _inventory_inside = field_validator("inventory")(inventory_inside)
    _limit_pattern = field_validator("limit")(limit_shape)
    _tag_names = field_validator("tags")(tag_names)

    def plan_request(self, repo: Path | None) -> PlanRequest:
        """The one request object the planner gets, with ``repo``: the server's own, as
        :func:`~chiffon.orchestrator.api.plan_routes.checked_repo` allowed it."""
        return PlanRequest(request=self.request, repo=repo, inventory=self.inventory, limit=self.limit, tags=self.tags)


class ApproveBody(BaseModel):
    """``POST /api/v1/plans/{id}/approve``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=MAX_REASON,
                        description="Why this plan is approved; it goes into the audit trail (required, as for the "
                                    "approve_plan tool).")
    code: str | None = Field(None, pattern=CODE, description="The current 6-digit one-time code, when the operator "
                                                            "set up TOTP (approvals.totp_secret); empty: none.")

    @field_validator("code", mode="before")
    @classmethod
    def _empty_code_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class RejectBody(BaseModel):
    """``POST /api/v1/plans/{id}/reject``."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=MAX_REASON, description="Note for the audit trail.")


class ErrorBody(BaseModel):
    """Every error answer: the error's type and a message that says what to do."""

    error: str = Field(description="The error's type: InvalidInput, NoMatch, PlanNotFound, PlanStateError, "
                                   "Unauthorized, ApprovalRefused, ...")
    message: str = Field(description="What went wrong and what to do.")
    field: str | None = Field(None, description="The input field at fault, for InvalidInput.")
    candidates: list[str] | None = Field(None, description="NoMatch: the closest playbooks or units.")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, wrong or revoked bearer token."},
    422: {"model": ErrorBody, "description": "Bad input: the field and what is allowed."},
}
"""Error answers every authenticated route may give, for the OpenAPI document."""
