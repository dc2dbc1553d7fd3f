"""Log records: JSON lines with the bound correlation ids, text with them in brackets; the error bus adds them."""

from __future__ import annotations

import json
import logging

import pytest

from chiffon.orchestrator.logview import matches, parse, render
from chiffon.shared.error_bus import report_error
from chiffon.shared.logs import current_context, log_context, setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    yield
    setup_logging()


def test_json_records_carry_the_ids_bound_around_them(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHIFFON_LOG_FORMAT", "json")
    monkeypatch.setenv("CHIFFON_LOG_LEVEL", "info")
    setup_logging(part="worker")
    log = logging.getLogger("chiffon.test")
    with log_context(plan="plan-1", run=None):
        with log_context(run="run-2"):
            log.info("inner %s", "x")
        log.warning("outer")
    log.info("none bound")
    logging.getLogger("httpx").info("a library's INFO stays out")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["message"], r.get("plan"), r.get("run")) for r in records] == \
        [("inner x", "plan-1", "run-2"), ("outer", "plan-1", None), ("none bound", None, None)]
    assert all(r["part"] == "worker" and r["logger"] == "chiffon.test" and "ctx" not in r for r in records)
    assert records[1]["level"] == "WARNING" and records[0]["ts"].endswith("+00:00")
    assert parse(json.dumps(records[0])) == records[0] and parse("plain text") is None and parse("{bad") is None
    assert matches(records[0], {"plan": "plan-1", "run": "run-2"}) and not matches(records[2], {"plan": "plan-1"})
    assert render(records[0]).endswith("inner x  [plan=plan-1 run=run-2]")


def test_text_records_show_the_ids_and_unknown_fields_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHIFFON_LOG_FORMAT", "text")
    setup_logging()
    with log_context(task="task-9"):
        logging.getLogger("chiffon.test").warning("slow")
    assert "chiffon.test [task=task-9]: slow" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown log context field.*plna"):
        with log_context(plna="plan-1"):
            pass
    assert current_context() == {}


def test_the_journal_stream_switches_to_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CHIFFON_LOG_FORMAT", raising=False)
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging()
    logging.getLogger("chiffon.test").warning("to the journal")
    assert json.loads(capsys.readouterr().err)["message"] == "to the journal"


def test_errors_reported_inside_a_context_carry_its_ids() -> None:
    with log_context(request="req-abc", plan="plan-7", run="run-8"):
        event = report_error("ansible", "run_failed", "boom")
        given = report_error("ansible", "run_failed", "boom", context={"plan": "plan-other"})
    assert event["context"] == {"plan": "plan-7", "correlation_id": "req-abc"}
    assert given["context"]["plan"] == "plan-other"  # what the caller says wins
