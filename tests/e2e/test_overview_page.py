"""The overview, the dashboard's first page: its charts move while a burst of uploads runs."""

import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from autoinfer.config import SourceConfig, StoreConfig, TriggerConfig
from tests.conftest import SEED_ZIP, RunningService
from tests.e2e.conftest import ROOT, assert_not_reloaded, mark_page, save_screenshot, sign_in

BURST = 6
TRIGGER = TriggerConfig(
    name="classify-incoming",
    bucket="data",
    prefix="incoming/",
    suffix=".zip",
    job={
        "name": "{key_stem}",
        "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
        "data": {"input_uri": "{uri}", "output_uri": "{bucket_uri}/processed"},
    },
)


def chart(page: Any, name: str) -> dict[str, str | None]:
    figure = page.locator(f"#chart-{name}")
    return {
        key: figure.get_attribute(f"data-{key}") for key in ("points", "path", "peak", "latest")
    }


def test_the_overview_charts_move_while_a_burst_of_uploads_runs(
    page: Any, start_service: Any, tmp_path: Path
) -> None:
    incoming = tmp_path / "buckets" / "data" / "incoming"
    incoming.mkdir(parents=True)
    running: RunningService = start_service(
        stores={"local": StoreConfig(type="local", root=str(tmp_path / "buckets"))},
        sources=[SourceConfig(type="watch", store="local", settle_s=0.2)],
        triggers=[TRIGGER],
    )
    sign_in(page, running, "/")
    mark_page(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    jobs = page.locator("#chart-jobs")
    expect(jobs).to_have_attribute("data-points", "60")  # one bar slot per minute
    expect(page.locator("#chart-images")).to_have_attribute("data-peak", "0")
    before = {name: chart(page, name) for name in ("images", "jobs", "queue", "inbox")}
    assert before["jobs"]["latest"] == "0" and before["images"]["peak"] == "0"

    for index in range(BURST):  # the uploads: zips of images dropped where the trigger watches
        shutil.copy(SEED_ZIP, incoming / f"burst-{index}.zip")

    # Every upload becomes a job that finishes; the charts follow without a reload. The
    # first built-in job of a test session exports the model first.
    expect(jobs).to_have_attribute("data-latest", str(BURST), timeout=240_000)
    expect(jobs.locator("rect.bar-finished")).not_to_have_count(0)
    after = {name: chart(page, name) for name in ("images", "jobs", "queue", "inbox")}
    assert float(after["images"]["peak"] or 0) > 0, after["images"]
    assert after["images"]["path"] != before["images"]["path"]
    assert after["jobs"]["path"] != before["jobs"]["path"]
    assert int(after["queue"]["points"] or 0) > int(before["queue"]["points"] or 0) or (
        after["queue"]["path"] != before["queue"]["path"]
    )
    expect(page.locator("#chart-images .chart-now")).to_contain_text("/s now")
    assert_not_reloaded(page)
    save_screenshot(page, "overview")
    docs = ROOT / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(docs / "overview.png"), full_page=True)
