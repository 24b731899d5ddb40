"""The job page filters its predictions to the items that failed."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.conftest import SEED_TRUTH, SEED_ZIP, RunningService
from tests.e2e.conftest import classifier_spec, save_screenshot, sign_in

BROKEN = ["broken/empty.png", "not-an-image.jpg"]


def test_the_failures_toggle_shows_only_the_images_that_could_not_be_read(
    page: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(SEED_ZIP) as seed, zipfile.ZipFile(mixed, "w") as archive:
        for name in seed.namelist():
            archive.writestr(name, seed.read(name))
        archive.writestr(BROKEN[0], b"")
        archive.writestr(BROKEN[1], b"plain text")
    job = dashboard.client().jobs.create_from_spec(
        classifier_spec("mixed", str(mixed), str(tmp_path / "out"))
    )
    job.wait_for("finished", timeout=180)

    sign_in(page, dashboard, f"/jobs/{job.id}")
    predictions = page.locator("#gallery .prediction")
    expect(predictions).to_have_count(7)
    expect(page.locator("#item-counts")).to_have_text("(5 ok, 2 failed)")
    toggle = page.get_by_label("Only failures")
    toggle.check()
    expect(predictions).to_have_count(2)
    expect(page.locator("#gallery figcaption")).to_have_text(BROKEN)
    expect(page.locator("#gallery .message.error")).to_have_count(2)
    save_screenshot(page, "job-failures")
    toggle.uncheck()
    expect(predictions).to_have_count(7)
    expect(page.locator("#gallery figcaption")).to_have_text(sorted([*SEED_TRUTH, *BROKEN]))


def test_a_job_without_failures_offers_no_failures_toggle(
    page: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    job = dashboard.client().jobs.create_from_spec(
        classifier_spec("clean", str(SEED_ZIP), str(tmp_path / "out"))
    )
    job.wait_for("finished", timeout=180)
    sign_in(page, dashboard, f"/jobs/{job.id}")
    expect(page.locator("#gallery .prediction")).to_have_count(5)
    expect(page.locator("#item-counts")).to_have_text("(5 ok, 0 failed)")
    expect(page.get_by_label("Only failures")).to_be_hidden()
