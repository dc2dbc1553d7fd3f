"""Plan events: one small message on the Redis stream ``chiffon:plan-events`` each time a plan changes in a way a
human may want to hear about, published from the one place that change happens.

==================  ==============================================  ==========================================
``kind``            published by                                    fields besides ``kind``, ``plan_id``, ``at``
==================  ==============================================  ==========================================
``pending_approval`` :func:`servers.ansible.plans.create_plan`      ``playbook``, ``risk``, ``blocked``
``decided``          :func:`servers.ansible.plans.decide`           ``decision``, ``approver``, ``channel``,
                                                                    ``risk``, ``playbook``
``run_finished``     ``servers.ansible.execution._record_outcome``  ``run_id``, ``outcome``, ``status``,
                                                                    ``reason``, ``playbook``
==================  ==============================================  ==========================================

Who reads them (the orchestrator's notifier, consumer group ``notify``) is no concern of the servers. Publishing
is best effort: a bus that is down or slow (more than :data:`PUBLISH_TIMEOUT_S`) never fails or holds up the plan
change; it is logged and counted (``chiffon_plan_events_lost_total``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

PLAN_EVENTS = "chiffon:plan-events"
PUBLISH_TIMEOUT_S = 2.0
Kind = Literal["pending_approval", "decided", "run_finished"]


async def publish(rt: Runtime, kind: Kind, plan_id: str, **fields: Any) -> str | None:
    """Put ``{"kind", "plan_id", "at" (ISO 8601 UTC), **fields}`` on :data:`PLAN_EVENTS`; the entry id, or None
    when the bus did not take it within :data:`PUBLISH_TIMEOUT_S` seconds (logged as a warning, never raised)."""
    from chiffon.shared import metrics

    event = {"kind": kind, "plan_id": plan_id, "at": datetime.now(UTC).isoformat(), **fields}
    try:
        return await asyncio.wait_for(rt.bus.publish(PLAN_EVENTS, event), PUBLISH_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the plan changed all the same; only its notification is lost
        metrics.PLAN_EVENTS_LOST.labels(kind).inc()
        log.warning("plan %s: %s event not published on %s (%s: %s); no notification will say it", plan_id, kind,
                    PLAN_EVENTS, type(exc).__name__, exc)
        return None
