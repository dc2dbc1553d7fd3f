"""The console's Undo action in a real browser: a finished run's Undo makes a pending undo plan, shown on Plans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime
from tests.console.helpers import (
    BROWSER_ARGS,
    CHROMIUM,
    PASSWORD,
    choose,
    log_in,
    needs_chromium,
    pick_pending,
    running_console,
)

playwright = pytest.importorskip("playwright.async_api", reason="the console tests need playwright (test group)")
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def console(home: Path, targets: Path, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_console(home, targets, repo, tmp_path_factory.mktemp("console-undo") / "console.log") as base:
        yield base


async def test_undo_a_finished_run_from_the_runs_page(console: str, rt: Runtime, repo: Path, targets: Path,
                                                      tmp_path: Path) -> None:
    svc = AnsibleService(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "undo me"})
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    run = await execution.execute(rt, await svc.catalog(), plan.id)
    assert (targets / "ai" / "echo.txt").read_text() == "undo me"
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            await log_in(page, console, "alice", PASSWORD)
            await page.get_by_role("tab", name="Runs").click()
            await page.locator("#runs-refresh").click()
            await choose(page, "run-pick", plan.id)
            await page.locator("#run-view").get_by_text("succeeded").first.wait_for(timeout=60_000)
            await page.locator("#undo-run").click()
            outcome = page.locator("#undo-outcome")
            await outcome.get_by_text("is pending").wait_for(timeout=120_000)
            undo_id = (await outcome.inner_text()).split("Undo plan")[1].split()[0].strip("*")
            await pick_pending(page, undo_id)
            await page.locator("#plan-view").get_by_text(f"undo-{run.run_id}.yml").first.wait_for()
        finally:
            await page.screenshot(path=str(tmp_path / "undo.png"), full_page=True)
            await browser.close()
    undone = await plans.get_plan(rt, undo_id)
    assert undone.status == "pending_approval" and undone.request == f"undo {run.run_id}"
    assert "echo.txt" in (undone.generated_playbook or "")
