"""The error bus and its incidents (``errors:``), and notifications to humans (``notify:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from chiffon.shared.config.base import Section


class ErrorSettings(Section):
    """The error bus (shared/error_bus.py) and its incidents (orchestrator/incidents.py)."""

    flood_threshold: int = Field(3, ge=1, description="Events of one fingerprint sent as they come per window; the "
                                                      "rest go out as one aggregated event with their count.")
    flood_window_s: float = Field(10.0, gt=0, description="Flood-detection window, seconds.")
    incident_window_s: float = Field(300.0, gt=0, description="An error joins an open incident that shares a plan, "
                                                              "task, host, backend or correlation id and was "
                                                              "updated this recently, seconds.")
    resolve_after_s: float = Field(1800.0, gt=0, description="An incident quiet this long resolves, seconds.")
    escalate_after_s: float = Field(3600.0, gt=0, description="An incident open this long goes to the inbox and "
                                                              "notifications (a critical one at once), seconds.")
    notify_urls: list[SecretStr] = Field(default_factory=list, description="Apprise URLs escalations go to "
                                                                          "(ntfy://, mailto://, discord://, json://...).")


NotifyEvent = Literal["pending_approval", "run_finished", "high_risk_approved"]


class NotifySettings(Section):
    """Notifications to humans through Apprise (orchestrator/notify.py): a plan awaits approval, a run finished, a
    high-risk plan was approved."""

    urls: list[SecretStr] = Field(default_factory=list, description="Apprise URLs (ntfy://, mailto://, discord://, "
                                                                    "json://...); empty: nothing is sent. Incidents "
                                                                    "go here too while errors.notify_urls is empty.")
    events: list[NotifyEvent] = Field(
        ["pending_approval", "run_finished", "high_risk_approved"],
        description="Which events are sent: pending_approval (a plan awaits a decision, with the console link), "
                    "run_finished (its outcome and first reason), high_risk_approved (who approved, through what).")
    retries: int = Field(3, ge=0, le=10, description="Retries of a delivery that failed (all URLs again).")
    retry_delay_s: float = Field(2.0, ge=0, le=300, description="Wait before the first retry, seconds; doubled "
                                                                "for each retry after it.")
