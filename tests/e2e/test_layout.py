"""Every page fits a 360 px wide phone screen: nothing makes the page scroll sideways."""

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import SEED_ZIP, RunningService
from tests.e2e.conftest import PHONE, local_spec, make_model, save_screenshot, sign_in

OVERFLOW = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"


def assert_fits(page: Any, what: str) -> None:
    width = page.evaluate(OVERFLOW)
    assert width <= PHONE["width"], (
        f"{what}: the page is {width} px wide on a {PHONE['width']} px screen"
    )


@pytest.fixture
def phone(page: Any) -> Any:
    page.set_viewport_size(PHONE)
    return page


def test_every_page_fits_a_360_px_wide_screen(
    phone: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    phone.goto(dashboard.url)
    expect(phone.get_by_label("API key")).to_be_visible()
    assert_fits(phone, "login")

    long_folder = tmp_path / ("a-rather-long-folder-name-without-any-breaks-" * 3)
    model = make_model(
        tmp_path / "model", "print('x' * 400)\nraise SystemExit('a long failure ' * 20)\n"
    )
    job = dashboard.client().jobs.create_from_spec(
        local_spec("a-job-with-a-long-name-" * 4, model, str(SEED_ZIP), str(long_folder / "out"))
    )
    sign_in(phone, dashboard, "/jobs")
    row = phone.locator(f"#jobs-table tr[data-id='{job.id}']")
    expect(row.locator("td.status")).to_have_text("failed", timeout=30_000)
    assert_fits(phone, "jobs")
    save_screenshot(phone, "jobs-phone")

    row.locator("td.name a").click()
    expect(phone.locator("#job-status")).to_have_text("failed")
    expect(phone.locator("#log")).to_contain_text("xxxx")
    assert_fits(phone, "job")
    save_screenshot(phone, "job-phone")

    for path, heading in (("/", "Overview"), ("/events", "Events"), ("/triggers", "Triggers")):
        phone.goto(dashboard.url + path)
        expect(phone.get_by_role("heading", name=heading)).to_be_visible()
        assert_fits(phone, heading)
