"""The console's Runs, Incidents and Audit pages in Debian's Chromium through Playwright, against `chiffon console`
as a user starts it: the runs table filtered and searched by request, a run followed live to its end with the
outcome at the top and a coloured log, an incident linked to its plan, an audit record read as fields.

Screenshots go to each test's tmp dir; with CHIFFON_SCREENSHOTS_TO_DOCS=1 also to docs/img/ (console-runs.png,
console-run-live.png, console-incidents.png, console-audit.png).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chiffon.orchestrator.runs import queue_run
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared import error_bus
from chiffon.shared.runtime import Runtime
from tests.conftest import CHECKOUT, git_commit_all, make_repo
from tests.console.helpers import BROWSER_ARGS, CHROMIUM, PASSWORD, choose, log_in, needs_chromium, running_console

playwright = pytest.importorskip("playwright.async_api", reason="the console tests need playwright (test group)")
pytestmark = needs_chromium

ATTACK = "<img src=x onerror=alert(1)>"
# A run that holds until the test says go: its first task's result is in the log while it runs.
GATED_PLAYBOOK = """# Write a file, wait for a gate file, write another (test helper for following a live run).
- name: Gated run
  hosts: ai
  gather_facts: false
  tags: [test]
  vars:
    gate: go
  tasks:
    - name: Write before the gate
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/before-gate.txt"
        content: "before"
        mode: "0644"
    - name: Wait for the gate
      ansible.builtin.wait_for:
        path: "{{ homelab_root }}/{{ gate }}"
        timeout: 600
    - name: Write after the gate
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/after-gate.txt"
        content: "after {{ gate }}"
        mode: "0644"
"""


@pytest.fixture(scope="module")
def gated_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("iac-runs") / "homelab-infra")
    (repo / "gated-run.yml").write_text(GATED_PLAYBOOK)
    git_commit_all(repo)
    return repo


@pytest.fixture(scope="module")
def console(home: Path, targets: Path, gated_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_console(home, targets, gated_repo, tmp_path_factory.mktemp("console-runs") / "console.log") as base:
        yield base


@pytest_asyncio.fixture(loop_scope="session")
async def page(console: str, tmp_path: Path) -> AsyncIterator[Any]:
    """A logged-in page (1366 px wide); any JavaScript dialog (an injected ``alert``) fails the test."""
    dialogs: list[str] = []
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        tab = await browser.new_page(viewport={"width": 1366, "height": 900})
        tab.on("dialog", lambda d: dialogs.append(d.message))
        try:
            await log_in(tab, console, "alice", PASSWORD)
            await tab.get_by_text("chiffon console").first.wait_for()
            yield tab
        finally:
            await tab.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            await browser.close()
    assert dialogs == [], f"a script ran in the page: {dialogs}"


async def shot(tab: Any, tmp_path: Path, name: str, *, docs: bool = True, **kwargs: Any) -> None:
    await tab.screenshot(path=str(tmp_path / name), **kwargs)
    if docs and os.environ.get("CHIFFON_SCREENSHOTS_TO_DOCS") == "1":
        shutil.copy(tmp_path / name, CHECKOUT / "docs" / "img" / name)


def cell(table: Any, text: str) -> Any:
    """The first visible cell of a Gradio table holding ``text`` (Gradio renders each cell twice, one hidden)."""
    return table.get_by_text(text).filter(visible=True).first


async def row_of(table: Any, text: str) -> list[str]:
    """The visible cells of the first row of a Gradio table with a cell holding ``text``."""
    found = table.get_by_test_id(re.compile(r"^cell-\d+-\d+$")).filter(has_text=text).filter(visible=True).first
    row = (await found.get_attribute("data-testid")).split("-")[1]
    cells = table.get_by_test_id(re.compile(rf"^cell-{row}-\d+$")).filter(visible=True)
    return [t.strip() for t in await cells.all_inner_texts()]


async def ran(rt: Runtime, repo: Path, playbook: str, request: str, approver: str, **kw: Any) -> plans.Plan:
    svc = AnsibleService(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), playbook, request=request, **kw)
    await plans.decide(rt, plan.id, "approved", approver=approver, channel="console")
    await execution.execute(rt, await svc.catalog(), plan.id)
    return plan


async def test_the_runs_table_filters_and_finds_a_run_by_its_request(page: Any, rt: Runtime, gated_repo: Path,
                                                                     tmp_path: Path) -> None:
    token = f"kuma{secrets.token_hex(3)}"
    echo = await ran(rt, gated_repo, "echo-message.yml", f"Echo the portals list for {token}", "alice (console)",
                     extra_vars={"message": "portals"})
    broken = await ran(rt, gated_repo, "break-things.yml", f"Break east on purpose for {token}", "bob (console)")
    await page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs-table")
    await page.locator("#runs-search").get_by_role("textbox").fill(f"portals list for {token}")
    await page.locator("#runs-find").click()
    await page.locator("#runs-note").get_by_text("1 run(s)").wait_for()
    await cell(table, echo.id).wait_for()
    assert await cell(table, broken.id).count() == 0
    await page.locator("#runs-search").get_by_role("textbox").fill(token)
    await choose(page, "runs-outcome", "failed")
    await page.locator("#runs-note").get_by_text("1 run(s)").wait_for()
    await cell(table, broken.id).wait_for()
    assert await cell(table, echo.id).count() == 0
    cells = await row_of(table, broken.id)
    assert cells[4:7] == ["failed", "failed", "bob (console)"]
    await page.locator("#runs-search").get_by_role("textbox").fill("' OR '1'='1")  # data, not SQL: no row
    await page.locator("#runs-find").click()
    await page.locator("#runs-note").get_by_text("0 run(s)").wait_for()
    await page.locator("#runs-search").get_by_role("textbox").fill(token)
    await choose(page, "runs-outcome", "achieved")
    await cell(table, echo.id).wait_for()
    await cell(table, echo.id).click()  # opens the run
    await page.locator("#run-view [data-state=achieved]").wait_for()
    await page.locator("#run-log .log-changed").first.wait_for()
    await shot(page, tmp_path, "console-runs.png", full_page=True)


async def test_a_run_page_follows_a_live_run_to_its_end(page: Any, console: str, rt: Runtime, gated_repo: Path,
                                                        targets: Path, tmp_path: Path) -> None:
    gate = f"go-{secrets.token_hex(3)}"
    svc = AnsibleService(rt, gated_repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "gated-run.yml", extra_vars={"gate": gate},
                                   request=f"Write the files after {gate} ({ATTACK})")
    await plans.decide(rt, plan.id, "approved", approver="alice (console)", channel="console")
    await queue_run(rt, plan.id)  # the console's own worker runs it
    await page.goto(f"{console}/?plan={plan.id}")  # a link to the run opens it on the Runs page
    view, log = page.locator("#run-view"), page.locator("#run-log")
    await view.locator("[data-state=running]").wait_for(timeout=120_000)
    await log.locator(".log-changed", has_text="Write before the gate").wait_for(timeout=60_000)
    assert await log.get_by_text("Write after the gate").count() == 0  # it waits at the gate
    await shot(page, tmp_path, "console-run-live.png", full_page=True)
    (targets / "ai" / gate).write_text("go")
    await view.locator("#run-outcome [data-state=achieved]").wait_for(timeout=120_000)
    await log.locator(".log-changed", has_text="Write after the gate").wait_for()
    await log.locator(".log-ok", has_text="Wait for the gate").wait_for()
    colour = await log.locator(".log-changed").first.evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(180, 83, 9)"  # amber
    outcome_box = await view.locator("#run-outcome").bounding_box()
    log_box = await log.bounding_box()
    assert outcome_box is not None and log_box is not None and outcome_box["y"] < log_box["y"]  # the outcome on top
    assert await view.locator("img").count() == 0 and ATTACK in await view.inner_text()  # the request as written
    for _ in range(120):  # the table reads the end too (read again when the followed run's state changed)
        cells = await row_of(page.locator("#runs-table"), plan.id)
        if cells[4] != "running":
            break
        await asyncio.sleep(0.5)
    assert cells[4:6] == ["achieved", "succeeded"]
    await view.locator("#run-audit > summary").click()  # the run's audit commit, inline, as fields
    _, run = await plans.decision_and_run(rt, plan.id)
    assert run is not None and run["outcome"] == "achieved"
    await view.locator("#run-audit dd", has_text=run["audit_commit"]).wait_for()
    await shot(page, tmp_path, "console-run-ended.png", docs=False, full_page=True)
    assert (targets / "ai" / "after-gate.txt").read_text() == f"after {gate}"


async def test_the_incidents_page_shows_an_incident_linked_to_its_plan(page: Any, rt: Runtime, gated_repo: Path,
                                                                       tmp_path: Path) -> None:
    token = secrets.token_hex(3)
    plan = await ran(rt, gated_repo, "echo-message.yml", f"Echo for incident {token}", "alice (console)",
                     extra_vars={"message": "incident"})
    reporter = error_bus.attach(rt.bus)
    try:
        error_bus.report_error("ansible", "run_failed", f"{token} Write the message failed: {ATTACK}", "error",
                               {"plan": plan.id, "host": f"h{token}"})
    finally:
        await error_bus.detach(reporter)
    await page.get_by_role("tab", name="Incidents").click()
    await page.locator("#incidents-refresh").click()
    await cell(page.locator("#incidents-table"), token).wait_for(timeout=60_000)
    cells = await row_of(page.locator("#incidents-table"), token)
    assert cells[1:3] == ["open", "error"] and f"plan:{plan.id}" in cells[4]
    await cell(page.locator("#incidents-table"), token).click()
    view = page.locator("#incident-view")
    await view.locator("a.incident-plan").wait_for()
    assert await view.locator("img").count() == 0 and ATTACK in await view.inner_text()
    await shot(page, tmp_path, "console-incidents.png", full_page=True)
    await view.locator("a.incident-plan").click()  # the incident's plan: its run on the Runs page
    await page.locator("#run-view", has_text=plan.id).locator("[data-state=achieved]").wait_for(timeout=60_000)
    assert await page.get_by_role("tab", name="Runs", selected=True).count() == 1


async def test_audit_loads_on_open_and_shows_a_record_as_fields(page: Any, console: str, rt: Runtime,
                                                                gated_repo: Path, tmp_path: Path) -> None:
    plan = await ran(rt, gated_repo, "echo-message.yml", f"Echo for the audit {secrets.token_hex(3)}",
                     "alice (console)", extra_vars={"message": "audit"})
    await page.goto(f"{console}/?audit={plan.id}")  # the run's link to its audit records
    await page.get_by_role("tab", name="Audit", selected=True).wait_for()
    await page.locator("#audit-note").get_by_text("3 record(s)").wait_for(timeout=60_000)  # plan, approval, run
    await cell(page.locator("#audit-table"), "approval").click()
    fields = page.locator("#audit-commit dl.audit-fields")
    await fields.wait_for()
    labels = [t.strip() for t in await fields.locator("dt").all_inner_texts()]
    assert labels[:3] == ["time", "kind", "plan"] and {"approver", "channel", "commit", "changed files"} <= set(labels)
    assert "alice (console)" in await fields.inner_text() and "kind: approval" not in await fields.inner_text()
    await shot(page, tmp_path, "console-audit.png", full_page=True)
    await page.goto(f"{console}/")  # without a link: the newest records are there on open, no Search needed
    await page.get_by_role("tab", name="Audit").click()
    await page.locator("#audit-note").get_by_text("record(s)").wait_for(timeout=60_000)
    await cell(page.locator("#audit-table"), plan.id).wait_for()
