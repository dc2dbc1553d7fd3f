"""Setting the console up exactly as docs/console.md says, from a fresh home: `chiffon console passwd alice`
writes the operator into ~/.config/chiffon/chiffon.yaml, `chiffon console` reads it (no operators in the
environment), and alice logs in in Chromium. The `chiffon` run is the checkout's venv one, as after the docs'
`uv sync --extra console` and `. .venv/bin/activate`. The screenshot goes to the test's tmp dir, and with CHIFFON_SCREENSHOTS_TO_DOCS=1 to docs/img/console-setup.png."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chiffon.orchestrator.console.serve import require_operators, serve_console
from chiffon.shared.config import DEFAULT_CONFIG, load_settings
from chiffon.shared.errors import ConfigError
from tests.console.helpers import BROWSER_ARGS, CHIFFON, CHROMIUM, PASSWORD, log_in, needs_chromium, running_console

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """An empty HOME outside pytest's temp root: as root, the embedded PostgreSQL runs as the `pgserver` user, who
    must traverse every folder above its data dir, and another pytest session on this machine chmods pytest's
    root back to 0700 whenever it starts. Its embedded servers are stopped and the folder removed afterwards."""
    from chiffon.shared import embedded

    home = Path(tempfile.mkdtemp(prefix="chiffon-fresh-home-"))
    try:
        yield home
    finally:
        for entry in embedded.find():
            if entry.home.is_relative_to(home):
                embedded.stop(entry)
        shutil.rmtree(home, ignore_errors=True)


def as_user(user_home: Path) -> dict[str, str]:
    """The environment of someone whose HOME is ``user_home``: default XDG dirs, no operators in the environment
    (the machine's /etc file stays out: CHIFFON_SYSTEM_CONFIG from conftest points at nothing)."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "CHIFFON_CONSOLE__OPERATORS")}
    return {**env, "HOME": str(user_home), "CHIFFON_HOME": str(user_home / ".local" / "share" / "chiffon")}


def test_the_console_without_an_operator_names_the_files_it_read(tmp_path: Path) -> None:
    user_home = tmp_path / "u"
    user_home.mkdir()
    done = subprocess.run([CHIFFON, "console"], env=as_user(user_home), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())  # rich may wrap a long line
    user_file = user_home / ".config" / "chiffon" / "chiffon.yaml"
    assert "no operator accounts in console.operators" in message
    assert f"read: {DEFAULT_CONFIG}" in message and f"not found: {user_file}" in message
    assert "chiffon console passwd NAME" in message


async def test_serve_console_refuses_no_operators_naming_the_files(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    user_file = tmp_path / "xdg" / "chiffon" / "chiffon.yaml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("console:\n  port: 7861\n")
    settings = load_settings(home=tmp_path / "home")
    with pytest.raises(ConfigError, match=rf"no operator accounts in console\.operators \(read: {DEFAULT_CONFIG}, "
                                          rf"{user_file}; not found: .*\): run `chiffon console passwd NAME`"):
        await serve_console(settings, "127.0.0.1", 0)
    with pytest.raises(ConfigError, match="no operator accounts"):
        require_operators(settings)


@needs_chromium
async def test_setup_exactly_as_the_docs_say_from_a_fresh_home(fresh_home: Path, tmp_path: Path,
                                                              targets: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api", reason="the console tests need playwright (test group)")
    user_home = fresh_home
    env = as_user(user_home)
    made = subprocess.run([CHIFFON, "console", "passwd", "alice", "--no-totp"], input=PASSWORD + "\n", env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    user_file = user_home / ".config" / "chiffon" / "chiffon.yaml"
    assert f"added operator alice in {user_file}" in made.stdout
    assert stat.S_IMODE(user_file.stat().st_mode) == 0o600
    assert [op["name"] for op in yaml.safe_load(user_file.read_text())["console"]["operators"]] == ["alice"]

    home = user_home / ".local" / "share" / "chiffon"
    log = tmp_path / "console.log"
    # refresh_s 60: the live tables' refresh (a spinner each tick) stays out of the docs' screenshot
    with running_console(home, targets, None, log, user_home=user_home, CHIFFON_CONSOLE__REFRESH_S="60") as base:
        async with playwright.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                tab = await browser.new_page(viewport={"width": 1366, "height": 800})
                tab.set_default_timeout(90_000)  # a busy 2-core machine: Gradio's first page takes a while
                await log_in(tab, base, "alice", "not the password")
                await tab.get_by_text("Incorrect Credentials").wait_for()
                await log_in(tab, base, "alice", PASSWORD)
                await tab.get_by_role("tab", name="Plans").wait_for()
                await tab.get_by_text("chiffon console").first.wait_for()
                await tab.wait_for_function(  # the page's first loads are done: no spinner ("queue: 1/1", "0.3s")
                    "!/queue: \\d|processing \\||\\b\\d+\\.\\ds\\b/.test(document.body.innerText)")
                await tab.wait_for_timeout(1000)  # and the loading fade of the table has ended (a picture only)
                await tab.screenshot(path=str(log.parent / "console-setup.png"))
                if os.environ.get("CHIFFON_SCREENSHOTS_TO_DOCS") == "1":  # the docs' picture, on purpose only
                    DOCS_IMG.mkdir(exist_ok=True)
                    shutil.copy(log.parent / "console-setup.png", DOCS_IMG / "console-setup.png")
            except Exception as exc:  # say what the console said: it may have died under the browser
                raise AssertionError(f"{exc}\nconsole log:\n{log.read_text()[-4000:]}") from exc
            finally:
                await browser.close()
