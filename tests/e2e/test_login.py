"""Signing in to the dashboard: the service's key opens it, a wrong key is refused."""

from typing import Any

from playwright.sync_api import expect

from tests.conftest import RunningService
from tests.e2e.conftest import sign_in


def test_signing_in_with_the_service_key_shows_the_jobs_page(
    page: Any, dashboard: RunningService
) -> None:
    sign_in(page, dashboard, "/jobs")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#page-info")).to_have_text("0–0 of 0")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_a_wrong_key_is_refused_with_a_visible_message(
    page: Any, dashboard: RunningService
) -> None:
    page.goto(dashboard.url)
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That key was refused: invalid API key")
    expect(page.locator("main")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('autoinfer.key')") is None


def test_the_key_is_remembered_for_the_tab_and_forgotten_on_sign_out(
    page: Any, dashboard: RunningService
) -> None:
    sign_in(page, dashboard)
    page.goto(dashboard.url + "/triggers")
    expect(page.get_by_role("heading", name="Triggers")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    page.reload()
    expect(page.get_by_label("API key")).to_be_visible()


def test_an_insecure_service_opens_without_signing_in(page: Any, start_service: Any) -> None:
    running = start_service(insecure=True)
    page.goto(running.url + "/jobs")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#page-info")).to_have_text("0–0 of 0")
    expect(page.get_by_label("API key")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
