"""The events and triggers pages: what arrived, what became of it, and the rules' counts."""

import json
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from autoinfer.config import SourceConfig, TriggerConfig
from tests.conftest import EXAMPLE_EVENT, RunningService
from tests.e2e.conftest import save_screenshot, sign_in

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


# A webhook source without a token of its own takes the API key.
WEBHOOK = SourceConfig(type="webhook")


def notification(key: str, sequencer: str) -> dict:
    """The seed's example S3 event, moved to bucket `data` and object `key`."""
    body = json.loads(EXAMPLE_EVENT.read_text())
    record = body["Records"][0]
    record["s3"]["bucket"]["name"] = "data"
    record["s3"]["object"].update(key=key, eTag=f"etag-{sequencer}", sequencer=sequencer)
    return body


def test_events_show_their_outcome_and_link_matched_ones_to_their_job(
    page: Any, start_service: Any, tmp_path: Path
) -> None:
    running: RunningService = start_service(sources=[WEBHOOK], triggers=[TRIGGER])

    def post(body: str) -> httpx.Response:
        headers = {**running.headers, "Content-Type": "application/json"}
        return httpx.post(f"{running.url}/v1/events/s3", content=body, headers=headers)

    matched = notification("incoming/images-1.zip", "0001")
    first = post(json.dumps(matched)).json()["events"][0]
    assert first["outcome"] == "matched"
    assert post(json.dumps(matched)).json()["events"][0]["outcome"] == "duplicate"
    assert (
        post(json.dumps(notification("notes/readme.txt", "0002"))).json()["events"][0]["outcome"]
        == "ignored"
    )
    assert post("this is not an S3 notification").status_code == 400

    sign_in(page, running, "/events")
    rows = page.locator("#events-table tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#events-table td.outcome")).to_have_text(
        ["rejected", "ignored", "duplicate", "matched"]
    )
    rejected = page.locator("#events-table tr[data-outcome='rejected'] td.result")
    expect(rejected).not_to_be_empty()
    duplicate = page.locator("#events-table tr[data-outcome='duplicate']")
    expect(duplicate.locator("td.result")).to_contain_text(f"duplicate of event {first['id']}")
    matched_row = page.locator("#events-table tr[data-outcome='matched']")
    expect(matched_row.locator("td.object")).to_have_text("data/incoming/images-1.zip")
    expect(matched_row.locator("td.trigger")).to_have_text("classify-incoming")
    save_screenshot(page, "events")

    page.get_by_label("Outcome").select_option("ignored")
    expect(page.locator("#events-table td.object")).to_have_text(["data/notes/readme.txt"])
    page.get_by_label("Outcome").select_option("matched")
    page.locator("#events-table tr[data-outcome='matched'] td.result a").click()
    expect(page).to_have_url(f"{running.url}/jobs/{first['job_id']}")
    expect(page.locator("#job-name")).to_have_text("images-1")
    expect(page.locator("#job-source")).to_contain_text("trigger classify-incoming")


def test_triggers_page_lists_the_rules_with_their_counts(page: Any, start_service: Any) -> None:
    running: RunningService = start_service(sources=[WEBHOOK], triggers=[TRIGGER])
    httpx.post(
        f"{running.url}/v1/events/s3",
        json=notification("incoming/images-2.zip", "0003"),
        headers=running.headers,
    ).raise_for_status()
    sign_in(page, running, "/triggers")
    row = page.locator("#triggers-table tr[data-id='classify-incoming']")
    expect(row.locator("td.bucket")).to_have_text("data")
    expect(row.locator("td.prefix")).to_have_text("incoming/")
    expect(row.locator("td.suffix")).to_have_text(".zip")
    expect(row.locator("td.events")).to_have_text("ObjectCreated:*")
    expect(row.locator("td.kind")).to_have_text("rule")
    expect(row.locator("td.counts")).to_contain_text("matched 1")
