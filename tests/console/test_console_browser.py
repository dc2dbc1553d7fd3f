"""The web console in a real browser: Debian's Chromium driven by Playwright, against `chiffon console` as a
user starts it. Screenshots go under each test's tmp dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chiffon.servers.ansible import plans
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
    with running_console(home, targets, repo, tmp_path_factory.mktemp("console") / "console.log") as base:
        yield base


@pytest_asyncio.fixture(loop_scope="session")
async def page(console: str, tmp_path: Path) -> AsyncIterator[Any]:
    """A logged-in browser page on the console (screenshot saved at the end)."""
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        tab = await browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            await log_in(tab, console, "alice", PASSWORD)
            await tab.get_by_text("chiffon console").first.wait_for()
            yield tab
        finally:
            await tab.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            await browser.close()


async def refresh_and_pick(tab: Any, tab_name: str, button: str, dropdown: str, plan_id: str) -> None:
    await tab.get_by_role("tab", name=tab_name).click()
    await tab.locator(f"#{button}").click()
    await choose(tab, dropdown, plan_id)


async def echo_plan(rt: Runtime, repo: Path, message: str, request: str | None = None) -> plans.Plan:
    svc = AnsibleService(rt, repo)
    return await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": message},
                                   request=request)


async def test_a_wrong_password_is_refused(console: str, tmp_path: Path) -> None:
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        tab = await browser.new_page()
        await log_in(tab, console, "alice", "not the password")
        await tab.get_by_text("Incorrect Credentials").wait_for(timeout=20_000)
        await tab.screenshot(path=str(tmp_path / "login-refused.png"))
        await log_in(tab, console, "mallory", PASSWORD)
        await tab.get_by_text("Incorrect Credentials").wait_for(timeout=20_000)
        assert await tab.get_by_role("tab", name="Plans").count() == 0
        await browser.close()
    async with httpx.AsyncClient() as client:  # nor can an API call skip the login
        assert (await client.get(f"{console}/config")).status_code in (401, 403)


async def test_approve_a_pending_plan_and_watch_it_succeed(page: Any, rt: Runtime, repo: Path, targets: Path,
                                                           tmp_path: Path) -> None:
    plan = await echo_plan(rt, repo, "from the console")
    await pick_pending(page, plan.id)
    await page.locator("#plan-view").get_by_text("echo-message.yml").first.wait_for()
    await page.screenshot(path=str(tmp_path / "plan.png"), full_page=True)
    await page.locator("#plan-comment").get_by_role("textbox").fill("looks right")
    await page.locator("#approve").click()
    await page.locator("#plan-outcome").get_by_text(f"Approved {plan.id}").wait_for()
    await page.locator("#plan-outcome").get_by_text("alice (console)").wait_for()
    await refresh_and_pick(page, "Runs", "runs-refresh", "run-pick", plan.id)
    await page.locator("#run-view").get_by_text("succeeded").first.wait_for(timeout=120_000)
    await page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
    log = await page.locator("#run-log").inner_text()
    assert "changed" in log and "Write the message" in log
    decision, run = await plans.decision_and_run(rt, plan.id)
    assert decision is not None and decision["approver"] == "alice (console)" and decision["channel"] == "console"
    assert run is not None and run["status"] == "succeeded"
    assert (targets / "ai" / "echo.txt").read_text() == "from the console"


async def test_reject_a_plan(page: Any, rt: Runtime, repo: Path) -> None:
    plan = await echo_plan(rt, repo, "never")
    await pick_pending(page, plan.id)
    await page.locator("#plan-comment").get_by_role("textbox").fill("not tonight")
    await page.locator("#reject").click()
    await page.locator("#plan-outcome").get_by_text(f"Rejected {plan.id}").wait_for()
    assert (await plans.get_plan(rt, plan.id)).status == "rejected"


async def test_request_changes_makes_a_linked_new_plan(page: Any, rt: Runtime, repo: Path) -> None:
    plan = await echo_plan(rt, repo, "first draft", request="Echo a message on ai")
    await pick_pending(page, plan.id)
    await page.locator("#plan-comment").get_by_role("textbox").fill("say hello instead")
    await page.locator("#request-changes").click()
    outcome = page.locator("#plan-outcome")
    await outcome.get_by_text("the new plan is").wait_for(timeout=120_000)
    new_id = (await outcome.inner_text()).split("the new plan is")[1].split()[0].strip("*. ()")
    new = await plans.get_plan(rt, new_id)
    assert new.supersedes == plan.id and new.status == "pending_approval"
    assert "say hello instead" in (new.request or "")
    decision, _ = await plans.decision_and_run(rt, plan.id)
    assert decision is not None and decision["decision"] == "rejected"
    assert decision["reason"] == "changes requested: say hello instead"


async def test_audit_filters_and_commit(page: Any, rt: Runtime, repo: Path, tmp_path: Path) -> None:
    plan = await echo_plan(rt, repo, "audited")
    await page.get_by_role("tab", name="Audit").click()
    await page.locator("#audit-plan").get_by_role("textbox").fill(plan.id)
    await page.locator("#audit-search").click()
    await page.locator("#audit-note").get_by_text("1 record(s)").wait_for()
    await page.locator("#audit-table [data-testid=cell-0-2]").click()
    await page.locator("#audit-commit").get_by_text(plan.audit_commit or "").wait_for()
    await page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    await page.locator("#audit-since").get_by_role("textbox").fill("yesterday-ish")
    await page.locator("#audit-search").click()
    await page.locator("#audit-note").get_by_text("Refused").wait_for()


async def test_a_host_marked_busy_pauses_its_plan_until_freed(page: Any, rt: Runtime, repo: Path,
                                                              targets: Path) -> None:
    await page.get_by_role("tab", name="Hosts").click()
    await choose(page, "host-pick", "ai")
    await page.locator("#host-reason").get_by_role("textbox").fill("gaming tonight")
    await page.locator("#host-busy").click()
    await page.locator("#host-note").get_by_text("ai marked busy by alice").wait_for()
    await page.locator("#hosts-table").get_by_text("busy").first.wait_for()
    plan = await echo_plan(rt, repo, "after the game")
    await pick_pending(page, plan.id)
    await page.locator("#approve").click()
    await page.locator("#plan-outcome").get_by_text(f"Approved {plan.id}").wait_for()
    await refresh_and_pick(page, "Runs", "runs-refresh", "run-pick", plan.id)
    await page.locator("#run-view").get_by_text("gaming tonight").first.wait_for(timeout=60_000)
    assert (await plans.get_plan(rt, plan.id)).status == "paused"
    await page.get_by_role("tab", name="Hosts").click()
    await page.locator("#host-free").click()
    await page.locator("#host-note").get_by_text("ai marked free").wait_for()
    await page.get_by_role("tab", name="Runs").click()
    await page.locator("#run-view").get_by_text("succeeded").first.wait_for(timeout=120_000)
    assert (targets / "ai" / "echo.txt").read_text() == "after the game"
