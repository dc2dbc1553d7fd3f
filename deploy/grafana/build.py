"""Write chiffon's Grafana dashboards (deploy/grafana/dashboards/*.json) from the panel lists below.

    uv run python deploy/grafana/build.py          # rewrite the JSON files
    uv run python deploy/grafana/build.py --check  # exit 1 when a committed file differs (the tests run it)

Each panel is (title, unit, [(PromQL expression, legend), ...]); units are Grafana's unit ids. Every expression
names only metrics chiffon registers (shared/metrics.py; tests/unit/test_dashboards.py parses them with
promql-parser). The dashboards use the datasource uid ``prometheus`` (provisioning/datasources/prometheus.yml).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
Panel = tuple[str, str, list[tuple[str, str]]]

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "chiffon-overview": ("chiffon: suite overview", [
        ("Hosts online", "short", [("sum(chiffon_host_online)", "online"), ("sum(chiffon_host_busy)", "busy")]),
        ("Open incidents", "short", [("sum by (severity) (chiffon_incidents_open)", "{{severity}}")]),
        ("Errors per minute", "short", [("sum by (source) (rate(chiffon_errors_total[5m])) * 60", "{{source}}")]),
        ("Runs per hour", "short", [("sum by (status) (increase(chiffon_runs_total[1h]))", "{{status}}")]),
        ("LLM requests per minute", "short",
         [("sum by (tier) (rate(chiffon_llm_requests_total[5m])) * 60", "{{tier}}")]),
        ("Queue waiting", "short", [("sum by (stream) (chiffon_queue_depth{state=\"pending\"})", "{{stream}}")]),
    ]),
    "chiffon-llm": ("chiffon: LLM tiers", [
        ("Requests per minute", "short",
         [("sum by (tier, status) (rate(chiffon_llm_requests_total[5m])) * 60", "{{tier}} {{status}}")]),
        ("Time to first token, p95", "s",
         [("histogram_quantile(0.95, sum by (le, tier) (rate(chiffon_llm_ttft_seconds_bucket[5m])))", "{{tier}}")]),
        ("Output tokens per second (last answer)", "short", [("chiffon_llm_tokens_per_second", "{{tier}}")]),
        ("Tokens per minute", "short",
         [("sum by (tier, direction) (rate(chiffon_llm_tokens_total[5m])) * 60", "{{tier}} {{direction}}")]),
        ("Spend, last 24 h", "currencyUSD", [("sum by (tier) (increase(chiffon_llm_cost_usd_total[24h]))", "{{tier}}")]),
        ("Circuit breakers open", "short", [("chiffon_llm_breaker_open", "{{backend}}")]),
    ]),
    "chiffon-runs": ("chiffon: runs and approvals", [
        ("Runs per hour", "short", [("sum by (status) (increase(chiffon_runs_total[1h]))", "{{status}}")]),
        ("Run duration, p50 and p95", "s",
         [("histogram_quantile(0.5, sum by (le) (rate(chiffon_run_seconds_bucket[1h])))", "p50"),
          ("histogram_quantile(0.95, sum by (le) (rate(chiffon_run_seconds_bucket[1h])))", "p95")]),
        ("Decisions per hour", "short",
         [("sum by (decision, channel) (increase(chiffon_approvals_total[1h]))", "{{decision}} via {{channel}}")]),
        ("Tool calls per minute", "short",
         [("sum by (tool, outcome) (rate(chiffon_mcp_tool_calls_total[5m])) * 60", "{{tool}} {{outcome}}")]),
        ("Drift: tasks that would change (last drift report)", "short",
         [("chiffon_drift_tasks", "{{host}} {{unit}}")]),
    ]),
    "chiffon-queue": ("chiffon: queue", [
        ("Stream length", "short", [("chiffon_queue_depth{state=\"length\"}", "{{stream}}")]),
        ("Pending (delivered, not acked)", "short", [("chiffon_queue_depth{state=\"pending\"}", "{{stream}}")]),
        ("Redis memory", "bytes", [("chiffon_redis_used_memory_bytes", "used")]),
    ]),
    "chiffon-hosts": ("chiffon: hosts", [
        ("CPU", "percent", [("chiffon_host_cpu_percent", "{{host}}")]),
        ("Load, 1 min", "short", [("chiffon_host_load1", "{{host}}")]),
        ("RAM available", "bytes", [("chiffon_host_ram_available_bytes", "{{host}}")]),
        ("VRAM used of total", "percentunit",
         [("chiffon_gpu_vram_used_bytes / chiffon_gpu_vram_total_bytes", "{{host}} {{name}}")]),
        ("VRAM held by chiffon", "bytes", [("chiffon_gpu_vram_chiffon_bytes", "{{host}} {{name}}")]),
        ("Disk used", "percent", [("chiffon_host_disk_used_percent", "{{host}}")]),
        ("Busy and online", "short", [("chiffon_host_busy", "busy {{host}}"), ("chiffon_host_online", "online {{host}}")]),
        ("Resident memory", "bytes", [("chiffon_process_resident_bytes", "{{host}} {{process}}")]),
    ]),
    "chiffon-voice": ("chiffon: voice", [
        ("Voice turn stages, p95", "s",
         [("histogram_quantile(0.95, sum by (le, stage) (rate(chiffon_voice_stage_seconds_bucket[15m])))",
           "{{stage}}")]),
        ("hostd requests, p95", "s",
         [("histogram_quantile(0.95, sum by (le, route) (rate(chiffon_http_request_seconds_bucket[15m])))",
           "{{route}}")]),
        ("hostd requests per minute", "short",
         [("sum by (route, code) (rate(chiffon_http_requests_total[5m])) * 60", "{{route}} {{code}}")]),
    ]),
    "chiffon-errors": ("chiffon: errors and incidents", [
        ("Errors per minute by source", "short",
         [("sum by (source, severity) (rate(chiffon_errors_total[5m])) * 60", "{{source}} {{severity}}")]),
        ("Open incidents", "short", [("chiffon_incidents_open", "{{severity}}")]),
        ("Error events dropped", "short", [("increase(chiffon_errors_dropped_total[1h])", "dropped")]),
        ("Startup seconds", "s", [("chiffon_startup_seconds", "{{part}}")]),
    ]),
}


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, object]:
    """One dashboard in Grafana's JSON model: time series panels, two per row."""
    out = []
    for i, (name, unit, targets) in enumerate(panels):
        out.append({
            "id": i + 1, "type": "timeseries", "title": name,
            "gridPos": {"x": 12 * (i % 2), "y": 8 * (i // 2), "w": 12, "h": 8},
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "prometheus"}}
                        for j, (expr, legend) in enumerate(targets)],
        })
    return {"uid": uid, "title": title, "tags": ["chiffon"], "schemaVersion": 39, "version": 1, "editable": True,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "panels": out}


def rendered() -> dict[str, str]:
    return {f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
            for uid, (title, panels) in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = sorted(name for name, text in files.items()
                       if not (OUT / name).exists() or (OUT / name).read_text() != text)
        if stale:
            print(f"out of date: {', '.join(stale)}; run deploy/grafana/build.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
