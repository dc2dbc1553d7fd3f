"""Prometheus metrics of a chiffon process, served at ``GET /metrics`` (text exposition format 0.0.4).

Every process has its own default registry (prometheus_client's). Counters and histograms are
updated where the work happens; gauges that describe shared state (queue depth, Redis memory,
host heartbeats) are refreshed from Redis just before each scrape by :func:`refresh_shared`.
The alert rules in ``deploy/prometheus/alerts.yml`` use these names.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from chiffon.shared.bus import Bus

log = logging.getLogger(__name__)

# Seconds: from 50 ms to 2 min, so that the 5 s voice target and slow model loads both fall inside a bucket.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter("chiffon_http_requests", "HTTP requests served.", ["service", "route", "code"])
HTTP_SECONDS = Histogram("chiffon_http_request_seconds", "HTTP request latency, seconds.", ["service", "route"],
                         buckets=LATENCY_BUCKETS)
TOOL_CALLS = Counter("chiffon_mcp_tool_calls", "MCP tool calls.", ["server", "tool", "outcome"])
TOOL_SECONDS = Histogram("chiffon_mcp_tool_seconds", "MCP tool call latency, seconds.", ["server", "tool"],
                         buckets=LATENCY_BUCKETS)
LLM_REQUESTS = Counter("chiffon_llm_requests", "LLM requests by tier and outcome.", ["tier", "status"])
LLM_TOKENS = Counter("chiffon_llm_tokens", "LLM tokens by tier and direction.", ["tier", "direction"])
LLM_COST = Counter("chiffon_llm_cost_usd", "Spend on paid LLM tiers, USD.", ["tier"])
LLM_TTFT = Histogram("chiffon_llm_ttft_seconds", "Time to first token of an answered LLM request, seconds.", ["tier"],
                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
LLM_TOKENS_PER_S = Gauge("chiffon_llm_tokens_per_second", "Output tokens per second of the tier's last answer.",
                         ["tier"])
LLM_BREAKER_OPEN = Gauge("chiffon_llm_breaker_open", "1 while the backend's circuit breaker is open.", ["backend"])
RUNS = Counter("chiffon_runs", "Plan runs that ended, by status.", ["status"])
RUN_OUTCOMES = Counter("chiffon_run_outcomes", "Plan runs that ended, by outcome: achieved, partial (applied, but "
                       "what was asked for is not in place), failed, cancelled.", ["outcome"])
RUN_SECONDS = Histogram("chiffon_run_seconds", "Duration of a plan's run, seconds.",
                        buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600))
APPROVALS = Counter("chiffon_approvals", "Human decisions on plans, by decision and channel.", ["decision", "channel"])
PLAN_EVENTS_LOST = Counter("chiffon_plan_events_lost", "Plan events the bus did not take (their notification is "
                           "lost), by kind.", ["kind"])
NOTIFICATIONS = Counter("chiffon_notifications", "Notifications sent through Apprise (orchestrator/notify.py), by "
                        "event and result: sent, failed (every retry), skipped (event not in notify.events).",
                        ["event", "result"])
VOICE_STAGE_SECONDS = Histogram("chiffon_voice_stage_seconds", "Seconds per stage of a voice turn (stt, llm_ttft, "
                                "tts_first_audio, total).", ["stage"], buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20))
STARTUP_SECONDS = Gauge("chiffon_startup_seconds", "Seconds from the process start to serving, per part.", ["part"])
ERRORS = Counter("chiffon_errors", "Errors reported on the error bus, by source and severity.", ["source", "severity"])
ERRORS_DROPPED = Counter("chiffon_errors_dropped", "Error events dropped because the reporter's queue was full.")
INCIDENTS_OPEN = Gauge("chiffon_incidents_open", "Open incidents, by highest severity.", ["severity"])
DRIFT_TASKS = Gauge("chiffon_drift_tasks", "Tasks check mode would change on a host, per unit of the IaC repo, in the "
                    "last drift report (only drifted pairs have a series).", ["host", "unit"])
QUEUE_DEPTH = Gauge("chiffon_queue_depth", "Entries waiting or pending on a stream.", ["stream", "state"])
REDIS_MEMORY = Gauge("chiffon_redis_used_memory_bytes", "Redis used_memory (INFO memory), bytes.")
HOST_ONLINE = Gauge("chiffon_host_online", "1 while the host's heartbeat key is alive.", ["host"])
HOST_BUSY = Gauge("chiffon_host_busy", "1 while the host is busy (in use, or marked by the operator).", ["host"])
CPU_PERCENT = Gauge("chiffon_host_cpu_percent", "CPU use since the last heartbeat, percent.", ["host"])
LOAD_1M = Gauge("chiffon_host_load1", "1-minute load average.", ["host"])
CPU_CORES = Gauge("chiffon_host_cpu_cores", "Logical CPU cores.", ["host"])
RAM_AVAILABLE = Gauge("chiffon_host_ram_available_bytes", "Available RAM, bytes.", ["host"])
DISK_USED = Gauge("chiffon_host_disk_used_percent", "Use of the filesystem holding CHIFFON_HOME, percent.", ["host"])
GPU_VRAM_USED = Gauge("chiffon_gpu_vram_used_bytes", "VRAM in use, bytes.", ["host", "gpu", "name"])
GPU_VRAM_TOTAL = Gauge("chiffon_gpu_vram_total_bytes", "VRAM size, bytes.", ["host", "gpu", "name"])
GPU_VRAM_CHIFFON = Gauge("chiffon_gpu_vram_chiffon_bytes", "VRAM held by chiffon's processes, bytes.",
                         ["host", "gpu", "name"])
GPU_BUSY = Gauge("chiffon_gpu_busy_percent", "GPU busy, percent.", ["host", "gpu", "name"])
PROCESS_RSS = Gauge("chiffon_process_resident_bytes", "Resident memory of a watched process (hostd.own_processes), "
                                                      "bytes.", ["host", "process"])

MB = 1024 * 1024


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the process's metrics."""
    return generate_latest(), CONTENT_TYPE_LATEST


def count_llm(tier: str, status: str, tokens_in: int, tokens_out: int, cost_usd: float,
              ttft_ms: float | None = None, tokens_per_s: float | None = None) -> None:
    """Count one LLM attempt of ``tier`` (``status`` ok or error) with its tokens, spend, time to first token
    (milliseconds) and output tokens per second."""
    LLM_REQUESTS.labels(tier, status).inc()
    if ttft_ms is not None:
        LLM_TTFT.labels(tier).observe(ttft_ms / 1000)
    if tokens_per_s is not None:
        LLM_TOKENS_PER_S.labels(tier).set(tokens_per_s)
    if tokens_in:
        LLM_TOKENS.labels(tier, "in").inc(tokens_in)
    if tokens_out:
        LLM_TOKENS.labels(tier, "out").inc(tokens_out)
    if cost_usd:
        LLM_COST.labels(tier).inc(cost_usd)


def set_drift(counts: dict[tuple[str, str], int]) -> None:
    """Set ``chiffon_drift_tasks{host,unit}`` to ``counts`` (``(host, unit) -> tasks that would change``), the drifted
    pairs of the newest drift report: every other series is removed, so a unit fixed (or gone) stops being
    exported and the label set stays as small as the drift itself."""
    DRIFT_TASKS.clear()
    for (host, unit), tasks in counts.items():
        DRIFT_TASKS.labels(host, unit).set(tasks)


async def refresh_shared(bus: Bus, streams: list[str], groups: dict[str, str], hosts: list[str],
                         assume_available: bool) -> None:
    """Refresh the gauges that live in Redis: stream length and pending entries, used memory, host states.

    ``groups`` maps a stream to the consumer group whose pending count is reported. Errors are logged,
    never raised: a scrape must answer even while Redis restarts.
    """
    from chiffon.shared.hosts import host_states

    try:
        stats = await bus.stream_stats(streams, groups)
        for stream, length in stats.lengths.items():
            QUEUE_DEPTH.labels(stream, "length").set(length)
        for stream, pending in stats.pending.items():
            QUEUE_DEPTH.labels(stream, "pending").set(pending)
        if stats.used_memory is not None:
            REDIS_MEMORY.set(stats.used_memory)
        if hosts:
            for host, state in (await host_states(bus, hosts, assume_available)).items():
                HOST_ONLINE.labels(host).set(0 if state["status"] == "offline" else 1)
                HOST_BUSY.labels(host).set(1 if state["status"] == "busy" else 0)
    except Exception as exc:  # a scrape reports what it can
        log.warning("metrics refresh from Redis failed: %s", exc)


def mark_started(part: str) -> float:
    """Set ``chiffon_startup_seconds{part}`` to the seconds since this process started (psutil's create time);
    returns them."""
    import time

    import psutil

    seconds = max(0.0, time.time() - float(psutil.Process().create_time()))
    STARTUP_SECONDS.labels(part).set(seconds)
    return seconds
