"""Who may approve a plan (``approvals:``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr

from chiffon.shared.config.base import Section


class ApprovalSettings(Section):
    """Who may approve a plan. Approval is human-only unless an operator says otherwise."""

    allow_tool_approval: bool = Field(
        False,
        description=(
            "Expose an `approve_plan` MCP tool. Off by default: the model driving the IDE "
            "must never approve its own plan."
        ),
    )
    totp_secret: SecretStr | None = Field(
        None, description="Base32 TOTP secret (CHIFFON_APPROVALS__TOTP_SECRET; `chiffon totp setup` makes one): "
                          "every approval then needs the current code from an authenticator app.")
    require_totp: bool = Field(
        False, description="Refuse every approval unless it carries a valid one-time code: with no totp_secret set, "
                           "nothing can be approved (the fix: `chiffon totp setup`). Off for the embedded "
                           "single-account default; `chiffon deploy` turns it on for the service account.")
    ttl: timedelta = Field(
        timedelta(hours=24), gt=timedelta(0),
        description="How long an approval stays good (seconds, or ISO 8601 like PT24H); a plan run or resumed "
                    "after that needs a new plan and approval.")
