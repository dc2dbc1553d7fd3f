"""The notify section and console.url: what a user sets through the environment is read; a bad value is refused
with the key named, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chiffon.shared.config import load_settings
from chiffon.shared.errors import ConfigError


def test_urls_and_events_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIFFON_NOTIFY__URLS", json.dumps(["ntfy://ntfy.sh/lab", "json://127.0.0.1:9/hook"]))
    monkeypatch.setenv("CHIFFON_NOTIFY__EVENTS", json.dumps(["run_finished"]))
    monkeypatch.setenv("CHIFFON_CONSOLE__URL", "https://ai.homelab.lan:7860")
    settings = load_settings(home=tmp_path)
    assert [u.get_secret_value() for u in settings.notify.urls] == ["ntfy://ntfy.sh/lab", "json://127.0.0.1:9/hook"]
    assert settings.notify.events == ["run_finished"] and settings.console.url == "https://ai.homelab.lan:7860"
    assert "ntfy.sh" not in repr(settings.notify)  # the URLs are secrets: tokens live in them


def test_every_event_is_sent_by_default(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path).notify.events == ["pending_approval", "run_finished", "high_risk_approved"]


@pytest.mark.parametrize("variable, value, key", [
    ("CHIFFON_NOTIFY__EVENTS", json.dumps(["plan_rejected"]), "notify.events"),
    ("CHIFFON_NOTIFY__RETRIES", "99", "notify.retries"),
    ("CHIFFON_CONSOLE__URL", "javascript:alert(1)", "console.url"),
    ("CHIFFON_CONSOLE__URL", "https://evil.example/?next=x", "console.url"),
    ("CHIFFON_CONSOLE__URL", "https://user@ai:7860", "console.url"),
])
def test_a_bad_value_is_refused_naming_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str,
                                               value: str, key: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(home=tmp_path)
