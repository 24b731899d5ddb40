"""Browser fixtures: Debian's Chromium driven by Playwright against a real service on loopback.

Chromium is not optional here: without it every browser test fails, naming what is missing.
Screenshots land in $AUTOINFER_SCREENSHOTS (default build/screenshots/); a failing test also
leaves a screenshot of its page there.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningService

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("AUTOINFER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("AUTOINFER_SCREENSHOTS", ROOT / "build" / "screenshots"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test, so fixtures can tell whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the dashboard's browser tests need it. "
            "Install Debian's package (`apt-get install chromium`) or set AUTOINFER_CHROMIUM "
            "to a Chromium binary.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        except Exception as error:  # noqa: BLE001 - reported as the test failure it is
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {error}", pytrace=False)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser tab (own session storage); fails the test on uncaught script errors."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    # What the page's Content-Security-Policy refused (an inline style, a foreign script).
    tab.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and script_errors.append(message.text)
        ),
    )
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        save_screenshot(tab, f"FAILED-{request.node.name}")
    context.close()
    assert not script_errors, f"uncaught errors in the dashboard's script: {script_errors}"


@pytest.fixture
def dashboard(start_service: Callable[..., RunningService]) -> RunningService:
    """A service that needs a key, with no sources or triggers."""
    return start_service()


def save_screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, running: RunningService, path: str = "/") -> None:
    """Open `path` and sign in with the service's key; returns once the page shows its content."""
    page.goto(running.url + path)
    page.get_by_label("API key").fill(running.key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("main").wait_for(state="visible")


def mark_page(page: Any) -> None:
    """Tag the loaded document, so a test can prove later that it was never reloaded."""
    page.evaluate("window.__autoinferNoReload = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__autoinferNoReload === true"), "the page was reloaded"


def make_model(folder: Path, script: str) -> Path:
    """A `local` model folder whose `python predict.py` runs `script`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(textwrap.dedent(script))
    return folder


def local_spec(name: str, model: Path, input_uri: str, output_uri: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": {"source_type": "local", "source_uri": str(model)},
        "workers": ["python predict.py"],
        "data": {"input_uri": input_uri, "output_uri": output_uri},
    }


def classifier_spec(name: str, input_uri: str, output_uri: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {"input_uri": input_uri, "output_uri": output_uri},
    }
