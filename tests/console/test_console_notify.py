"""Notifications received: `chiffon console` started with ``CHIFFON_NOTIFY__URLS`` pointing at an HTTP receiver on
127.0.0.1 (Apprise's json:// plugin), a plan made from the CLI, and the link in the notification opened in Debian's
Chromium (through Playwright) to the console's login and the plan.

The screenshot goes to the test's tmp dir; with CHIFFON_SCREENSHOTS_TO_DOCS=1 also to docs/img/console-notify.png.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from chiffon.servers.ansible import plans
from chiffon.shared.runtime import Runtime
from tests.conftest import CHECKOUT
from tests.console.helpers import (
    BROWSER_ARGS,
    CHIFFON,
    CHROMIUM,
    PASSWORD,
    needs_chromium,
    running_console,
)
from tests.fixtures.apprise_receiver import Receiver

playwright = pytest.importorskip("playwright.async_api", reason="the console tests need playwright (test group)")
pytestmark = needs_chromium


async def test_a_plan_made_from_the_cli_is_notified_with_a_link_that_opens_the_console(
        rt: Runtime, home: Path, targets: Path, repo: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        with running_console(home, targets, repo, tmp_path / "console.log",
                             CHIFFON_NOTIFY__URLS=json.dumps([receiver.url])) as base:
            proc = await asyncio.create_subprocess_exec(CHIFFON, "run", "deploy redis", "--repo", str(repo), "--json",
                                                        env=cli_env, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            assert out, err.decode()
            plan_id = json.loads(out)["plan_id"]
            for _ in range(600):  # the console's notifier sends it; a failing test stops here (not a timing)
                if receiver.about(plan_id):
                    break
                await asyncio.sleep(0.1)
            (sent,) = receiver.about(plan_id)
            plan = await plans.get_plan(rt, plan_id)
            assert sent["title"] == f"chiffon: deploy-redis.yml awaits approval ({plan.risk} risk)"
            assert "Request: deploy redis" in sent["message"]
            link = f"{base}/?review={plan_id}"
            assert f"Review it: {link}" in sent["message"]
            await open_the_link(link, plan_id, tmp_path)
    finally:
        receiver.close()


async def open_the_link(link: str, plan_id: str, tmp_path: Path) -> None:
    """Open ``link`` as someone who tapped the notification: the console's login, then the plan's review."""
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab: Any = await browser.new_page(viewport={"width": 1280, "height": 900})
            await tab.goto(link)
            await tab.get_by_label("username").fill("alice")
            await tab.get_by_label("password").fill(PASSWORD)
            await tab.get_by_role("button", name="Login").click()
            await tab.locator("#plans-pending").wait_for(timeout=60_000)  # logged in
            await tab.goto(link)  # logged in now: the link itself opens the plan's review, no click needed
            await tab.locator("#plan-view").get_by_text("deploy-redis.yml").first.wait_for()
            await tab.screenshot(path=str(tmp_path / "console-notify.png"))
            if os.environ.get("CHIFFON_SCREENSHOTS_TO_DOCS") == "1":
                await tab.screenshot(path=str(CHECKOUT / "docs" / "img" / "console-notify.png"))
        finally:
            await browser.close()
