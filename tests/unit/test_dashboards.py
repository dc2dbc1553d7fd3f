"""Grafana dashboards, alert rules and the compose file: every PromQL expression parses and names only metrics
chiffon registers; the committed dashboards are what build.py writes; compose mounts files that exist."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import promql_parser
import pytest
import yaml

from tests.conftest import CHECKOUT
from tests.unit.test_alerts import RULES, exported_names

GRAFANA = CHECKOUT / "deploy" / "grafana"
COMPOSE = CHECKOUT / "deploy" / "compose.yaml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMETHEUS_OWN = {"up"}  # the series Prometheus writes for every scrape target


def metric_names(expr: str) -> set[str]:
    """Metric names the expression selects, from promql-parser's syntax tree."""
    tree = promql_parser.parse(expr)
    return set(re.findall(r'name: Some\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', repr(tree)))


def expressions() -> list[tuple[str, str]]:
    found = [(f"{path.name}: {panel['title']}", target["expr"])
             for path in DASHBOARDS for panel in json.loads(path.read_text())["panels"] for target in panel["targets"]]
    found += [(f"alerts.yml: {rule['alert']}", rule["expr"])
              for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    return found


def test_the_suite_has_every_dashboard_the_operators_asked_for() -> None:
    assert {p.stem for p in DASHBOARDS} == {"chiffon-overview", "chiffon-llm", "chiffon-runs", "chiffon-queue",
                                            "chiffon-hosts", "chiffon-voice", "chiffon-errors"}


@pytest.mark.parametrize("where, expr", expressions())
def test_every_expression_parses_and_uses_registered_metrics(where: str, expr: str) -> None:
    used = metric_names(expr)
    assert used, f"{where}: selects no metric"
    known = exported_names() | PROMETHEUS_OWN
    assert used <= known, f"{where}: {used - known} not registered"


def test_committed_dashboards_are_what_build_writes() -> None:
    done = subprocess.run([sys.executable, str(GRAFANA / "build.py"), "--check"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_dashboards_are_in_grafanas_provisioning_format() -> None:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] == path.stem and board["title"] and board["schemaVersion"] >= 36
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["targets"]
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["apiVersion"] == 1 and source["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "chiffon.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_runs_prometheus_and_grafana_with_files_that_exist() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert isinstance(service.get("image"), str) and ":" in service["image"], name  # pinned tags
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts {source}, which is missing"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
