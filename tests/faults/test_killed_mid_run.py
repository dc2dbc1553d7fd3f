"""A part of chiffon SIGKILLed in the middle of a run (tests/faults/harness.py): the client is told at once,
Ansible's outcome is kept, and once `chiffon status` has reconciled, plan, run and audit agree and nothing ran
twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chiffon.shared.runtime import stop_embedded
from tests.faults.harness import Lab, ansible_left, approved_plan, converged, inject, make_lab


@pytest_asyncio.fixture(loop_scope="session")
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    made = make_lab(tmp_path)
    try:
        yield made
    finally:
        await stop_embedded(made.settings)


@pytest.mark.parametrize("part", ["postgres", "redis"])
async def test_a_backing_server_killed_is_told_at_once_and_the_run_it_could_not_record_is_kept(
        lab: Lab, part: str) -> None:
    plan_id = await approved_plan(lab)
    fault = await asyncio.to_thread(inject, part, lab, plan_id)
    name = {"postgres": "PostgreSQL", "redis": "Redis"}[part]
    assert fault.exit_code == 2, fault.stderr[-3000:]
    assert f"{name} stopped answering" in fault.stderr and f"chiffon status {plan_id}" in fault.stderr
    assert "Traceback" not in fault.stderr
    state = await converged(lab, plan_id)
    assert state["converged"], state
    assert state["status"] == "succeeded" and state["applied"] == 1  # Ansible finished what it started, once


async def test_the_cli_killed_leaves_a_run_that_is_recorded_as_interrupted(lab: Lab) -> None:
    plan_id = await approved_plan(lab)
    await asyncio.to_thread(inject, "cli", lab, plan_id)
    state = await converged(lab, plan_id)
    assert state["converged"], state
    assert state["status"] == "failed" and "interrupted" in state["audit"][0]["failures"][0]["message"]
    assert "check them" in state["status_output"]


async def test_a_worker_killed_mid_run_is_reported_to_the_waiting_client_by_the_next_worker(lab: Lab) -> None:
    plan_id = await approved_plan(lab)
    fault = await asyncio.to_thread(inject, "worker", lab, plan_id)
    assert fault.exit_code not in (0, None) and "interrupted" in fault.stderr, fault.stderr[-3000:]
    state = await converged(lab, plan_id)
    assert state["converged"], state
    assert state["status"] == "failed"


async def test_ctrl_c_stops_the_run_kills_ansible_and_records_it_cancelled(lab: Lab) -> None:
    plan_id = await approved_plan(lab)
    fault = await asyncio.to_thread(inject, "ctrl-c", lab, plan_id)
    assert fault.exit_code == 130, fault.stderr[-3000:]
    assert f"stopping the run of {plan_id}" in fault.stderr and "interrupted" in fault.stderr
    assert "Traceback" not in fault.stderr
    assert ansible_left(lab) == []  # ansible-playbook and its forks were killed with the run
    state = await converged(lab, plan_id)
    assert state["converged"], state
    assert state["status"] == "failed" and state["applied"] == 0
    assert state["audit"][0]["failures"][0]["message"].startswith("cancelled: ")
    assert "reconciled" not in state["audit"][0]  # recorded as it stopped, not afterwards
