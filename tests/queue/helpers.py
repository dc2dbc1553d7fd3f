"""What the queue tests share: a queue that knows the role files, and the results stream read whole."""

from __future__ import annotations

import json
from collections import Counter

from chiffon.servers.tasks.roles import PIPELINE, load_roles
from chiffon.servers.tasks.service import agent_checks
from chiffon.shared.queue import RESULTS_STREAM, TaskQueue
from chiffon.shared.runtime import Runtime


def queue(rt: Runtime) -> TaskQueue:
    """A queue that refuses unknown roles (as the agents' server checks them), test commands unchecked."""
    return TaskQueue(rt, checks=agent_checks([*load_roles(), PIPELINE]))


async def results_for(rt: Runtime, ids: set[str]) -> Counter[str]:
    """How many results-stream messages each of ``ids`` has (the whole stream is read)."""
    seen: Counter[str] = Counter()
    last = "-"
    while True:
        batch = await rt.bus.redis.xrange(RESULTS_STREAM, min=last, count=5000)
        batch = [e for e in batch if e[0] != last]
        if not batch:
            return seen
        for _entry_id, fields in batch:
            task_id = json.loads(fields["data"]).get("task_id")
            if task_id in ids:
                seen[task_id] += 1
        last = batch[-1][0]
