"""The jobs table: live without reloading, filtered by status, a page at a time."""

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.conftest import SEED_ZIP, RunningService
from tests.e2e.conftest import (
    assert_not_reloaded,
    classifier_spec,
    local_spec,
    make_model,
    mark_page,
    save_screenshot,
    sign_in,
)


def test_a_job_created_through_the_api_appears_and_turns_finished_without_a_reload(
    page: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    sign_in(page, dashboard, "/jobs")
    mark_page(page)
    job = dashboard.client().jobs.create_from_spec(
        classifier_spec("seed-images", str(SEED_ZIP), str(tmp_path / "out"))
    )
    row = page.locator(f"#jobs-table tr[data-id='{job.id}']")
    expect(row.locator("td.name")).to_have_text("seed-images")
    expect(row.locator("td.source")).to_have_text("api")
    expect(row.locator("td.input")).to_have_text(str(SEED_ZIP))
    # The first built-in job of a session exports the model to ONNX first.
    expect(row.locator("td.status")).to_have_text("finished", timeout=120_000)
    expect(row.locator("td.progress")).to_contain_text("5 / 5")
    expect(row.locator("td.attempt")).to_have_text("1")
    expect(page.locator("#page-info")).to_have_text("1–1 of 1")
    assert_not_reloaded(page)
    save_screenshot(page, "jobs")


def test_status_filter_and_paging_walk_through_many_jobs(
    page: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    client = dashboard.client()
    missing = str(tmp_path / "no-such-model")
    for index in range(6):
        client.jobs.create_from_spec(
            local_spec(f"broken-{index}", Path(missing), str(SEED_ZIP), str(tmp_path / "out"))
        )
    model = make_model(tmp_path / "model", "print('done')\n")
    client.jobs.create_from_spec(local_spec("works", model, str(SEED_ZIP), str(tmp_path / "out")))

    sign_in(page, dashboard, "/jobs?limit=5")
    expect(page.locator("#page-info")).to_have_text("1–5 of 7")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(5)
    page.get_by_role("button", name="Older →").click()
    expect(page.locator("#page-info")).to_have_text("6–7 of 7")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    assert "offset=5" in page.url

    page.get_by_label("Status").select_option("finished")
    expect(page.locator("#page-info")).to_have_text("1–1 of 1", timeout=30_000)
    expect(page.locator("#jobs-table td.name")).to_have_text(["works"])

    page.get_by_label("Status").select_option("failed")
    expect(page.locator("#page-info")).to_have_text("1–5 of 6", timeout=30_000)
    expect(page.locator("#jobs-table td.status")).to_have_text(["failed"] * 5)
    page.get_by_role("button", name="Older →").click()
    expect(page.locator("#jobs-table td.status")).to_have_text(["failed"])
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()
