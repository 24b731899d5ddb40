"""The job page: predictions gallery, live log, stop and retry."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from autoinfer.sandbox import SandboxConfig
from tests.conftest import SEED_TRUTH, SEED_ZIP, RunningService
from tests.e2e.conftest import (
    PHONE,
    assert_not_reloaded,
    classifier_spec,
    local_spec,
    make_model,
    mark_page,
    save_screenshot,
    sign_in,
)

PERCENT = re.compile(r"^\d{1,3}\.\d%$")

# Prints a tick every 0.2 s; after tick 5 it waits for the test's go-ahead file in its data
# folder (all of the host its sandbox shows it), so the test sees the log both before and
# after it grows, however fast the machine is.
TICKING_MODEL = """
import os, time
from pathlib import Path

for tick in range(1, 31):
    if tick == 6:
        while not Path(os.environ["AUTOINFER_DATA_PATH"], "go").exists():
            time.sleep(0.05)
    print(f"tick {tick}", flush=True)
    time.sleep(0.2)
"""

ENDLESS_MODEL = """
import time

tick = 0
while True:
    tick += 1
    print(f"still working {tick}", flush=True)
    time.sleep(0.2)
"""

# Fails its first attempt and succeeds on the next, remembering across attempts in a file.
FAILS_ONCE_MODEL = """
import os, sys
from pathlib import Path

marker = Path({marker!r})
if not marker.exists():
    marker.write_text("tried")
    sys.exit("first attempt fails on purpose")
print("second attempt works", flush=True)
Path(os.environ["AUTOINFER_OUTPUT_PATH"], "result.txt").write_text("ok")
"""


def test_a_finished_classifier_job_shows_five_thumbnails_with_their_classes(
    page: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    job = dashboard.client().jobs.create_from_spec(
        classifier_spec("gallery", str(SEED_ZIP), str(tmp_path / "out"))
    )
    job.wait_for("finished", timeout=120)

    sign_in(page, dashboard, f"/jobs/{job.id}")
    expect(page.locator("#job-status")).to_have_text("finished")
    predictions = page.locator("#gallery .prediction")
    expect(predictions).to_have_count(5)
    expect(page.locator("#gallery figcaption")).to_have_text(sorted(SEED_TRUTH))
    for index, file in enumerate(sorted(SEED_TRUTH)):
        item = predictions.nth(index)
        expect(item.locator(".classes li")).to_have_count(5)
        expect(item.locator(".classes .bar-text")).to_have_text([PERCENT] * 5)
        image = item.locator("img")
        expect(image).to_have_attribute("src", re.compile(r"^blob:"))
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        class_ids = [li.get_attribute("data-class-id") for li in item.locator(".classes li").all()]
        assert SEED_TRUTH[file][0] in class_ids, f"{file}: true class not in the top 5 {class_ids}"
    expect(page.locator("#job-output")).to_have_text(str(tmp_path / "out" / "gallery.zip"))
    expect(page.locator("#timeline li")).to_have_count(6)
    expect(page.locator("#job-spec")).to_contain_text('"source_uri": "efficientnet_lite0"')
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()
    save_screenshot(page, "job")

    page.set_viewport_size(PHONE)
    expect(predictions).to_have_count(5)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_log_of_a_running_job_grows_on_screen(
    page: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "model", TICKING_MODEL)
    job = dashboard.client().jobs.create_from_spec(
        local_spec("ticking", model, str(SEED_ZIP), str(tmp_path / "out"))
    )
    sign_in(page, dashboard, f"/jobs/{job.id}")
    mark_page(page)
    log = page.locator("#log")
    expect(log).to_contain_text("tick 5", timeout=30_000)
    expect(page.locator("#job-status")).to_have_text("running")
    expect(log).not_to_contain_text("tick 6")
    scratch = dashboard.service.runner_context.scratch_root
    (next(scratch.glob(f"{job.id}-*")) / "data" / "go").write_text("go")  # the running attempt's
    expect(log).to_contain_text("tick 12")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(log).to_contain_text("tick 30", timeout=30_000)
    expect(page.locator("#job-status")).to_have_text("finished", timeout=30_000)
    ticks = [line for line in log.inner_text().splitlines() if line.startswith("tick ")]
    assert ticks == [f"tick {n}" for n in range(1, 31)]
    assert_not_reloaded(page)


def test_the_stop_button_stops_a_running_job(
    page: Any, dashboard: RunningService, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "model", ENDLESS_MODEL)
    job = dashboard.client().jobs.create_from_spec(
        local_spec("endless", model, str(SEED_ZIP), str(tmp_path / "out"))
    )
    sign_in(page, dashboard, f"/jobs/{job.id}")
    expect(page.locator("#log")).to_contain_text("still working 2", timeout=30_000)
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#job-status")).to_have_text("stopped", timeout=30_000)
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.locator("#timeline li").last).to_contain_text("stopped")
    assert dashboard.client().jobs.get(job.id).status == "stopped"


def test_the_retry_button_runs_a_failed_job_again(
    page: Any, start_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    # The model remembers its first attempt in a file on the host: outside a sandbox's view.
    dashboard = start_service(sandbox=SandboxConfig(type="none"))
    model = make_model(tmp_path / "model", FAILS_ONCE_MODEL.format(marker=str(tmp_path / "tried")))
    job = dashboard.client().jobs.create_from_spec(
        local_spec("fails-once", model, str(SEED_ZIP), str(tmp_path / "out"))
    )
    sign_in(page, dashboard, f"/jobs/{job.id}")
    expect(page.locator("#job-status")).to_have_text("failed", timeout=30_000)
    expect(page.locator("#job-reason")).to_contain_text("first attempt fails on purpose")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#job-status")).to_have_text("finished", timeout=30_000)
    expect(page.locator("#job-reason")).to_be_hidden()
    expect(page.locator("#job-attempt")).to_have_text("2 of 2")
    expect(page.locator("#log")).to_contain_text("second attempt works")
    expect(page.locator("#timeline li", has_text="retry requested")).to_have_count(1)
    expect(page.locator("#job-output")).to_have_text(str(tmp_path / "out" / "fails-once.zip"))


def test_an_unknown_job_says_it_does_not_exist(page: Any, dashboard: RunningService) -> None:
    sign_in(page, dashboard, "/jobs/no-such-job")
    expect(page.get_by_role("alert")).to_have_text("Could not load: job no-such-job does not exist")
