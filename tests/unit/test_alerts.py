"""The Prometheus alert rules are well formed and use only metrics chiffon exports."""

from __future__ import annotations

import re

import yaml
from prometheus_client import REGISTRY

import chiffon.shared.metrics  # noqa: F401  (registers chiffon's metrics)
from tests.conftest import CHECKOUT

RULES = CHECKOUT / "deploy" / "prometheus" / "alerts.yml"
THRESHOLDS = {"VoiceLatencyHigh", "OllamaMemoryHigh", "HostCpuSustainedHigh", "DiskAlmostFull", "RedisMemoryHigh",
              "HostOffline"}


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_every_homelab_threshold_has_a_well_formed_rule() -> None:
    rules = [r for group in yaml.safe_load(RULES.read_text())["groups"] for r in group["rules"]]
    assert THRESHOLDS <= {r["alert"] for r in rules}
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_rules_use_only_exported_metrics() -> None:
    exported = exported_names()
    text = RULES.read_text()
    used = set(re.findall(r"\bchiffon_[a-z0-9_]+", text))
    assert used and used <= exported, used - exported
