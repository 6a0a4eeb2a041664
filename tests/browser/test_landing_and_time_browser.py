"""Run and Retry land on the new run as a whole page; times follow the user's zone (Chromium).

Screenshots at 1440x900 and 390x844 in test-artifacts/screenshots/.
"""

import re

import pytest
from playwright.sync_api import expect

from runs.models import Run
from runs.services import start_run
from tests.conftest import make_version
from tests.test_dashboard_runs import CREDIT_CHECK
from tests.test_time_zones import RELATIVE, WAITED

RUN_DONE = 20_000  # ms
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = [pytest.param(WIDE, id="desktop"), pytest.param(PHONE, id="phone")]


@pytest.fixture
def credit_version(transactional_db):
    return make_version(CREDIT_CHECK, name="Credit check")


def start(version, user, inputs):
    return start_run(
        version=version, environment="sandbox", inputs=inputs, type="manual", user=user
    )


def expect_whole_page(page):
    """The site's header and main navigation are there: the page was loaded, not swapped in."""
    expect(page.locator("header.topbar")).to_have_count(1)
    expect(page.get_by_role("navigation", name="Main")).to_be_attached()
    expect(page.locator("main.page")).to_have_count(1)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_run_lands_on_the_new_run_with_header_title_and_message_once(
    open_session, screenshot, worker, operator, credit_version, viewport
):
    page = open_session(operator, viewport=viewport)
    page.goto(f"/procedures/{credit_version.procedure.public_id}/")
    expect(page).to_have_title("Credit check · Rapidfolio")
    page.get_by_label("Customer").fill("cust_anna")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/run_\w+/$"))
    run = Run.objects.get()
    expect_whole_page(page)
    message = page.get_by_text(f"Run {run.public_id} started in sandbox.")
    expect(message).to_have_count(1)
    expect(message).to_be_visible()
    expect(page).to_have_title(re.compile(rf"^Run {run.public_id} · \w+"))
    # The page polls until the run settles; each swap brings the title along.
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN_DONE)
    expect(page).to_have_title(f"Run {run.public_id} · Completed · Rapidfolio")
    screenshot(page, "landed")
    page.get_by_role("link", name="Step Log").click()
    expect(page).to_have_title(f"Run {run.public_id} · Completed · Step Log · Rapidfolio")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
    expect(page.get_by_role("link", name=run.public_id)).to_be_visible()
    expect(page.get_by_text("started in sandbox.")).to_have_count(0)  # shown once, not again


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_retry_of_a_transient_failure_lands_on_the_new_run(
    open_session, screenshot, worker, operator, credit_version, viewport
):
    failed = start(credit_version, operator, {"customer_id": "cust_timeout"})
    worker.drain()
    page = open_session(operator, viewport=viewport)
    page.goto(f"/runs/{failed.public_id}/")
    expect(page.locator("#run-status")).to_have_text("Failed")
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(lambda url: failed.public_id not in url)
    retry = Run.objects.get(retry_of=failed)
    expect(page).to_have_url(re.compile(rf"/runs/{retry.public_id}/$"))
    expect_whole_page(page)
    expect(page.get_by_text(f"Run {retry.public_id} started as a retry of")).to_have_count(1)
    expect(page).to_have_title(re.compile(rf"^Run {retry.public_id} · "))
    expect(page.locator(".run-header").get_by_role("link", name=failed.public_id)).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("Failed", timeout=RUN_DONE)
    screenshot(page, "retry-landed")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_choosing_a_time_zone_changes_the_times_of_the_runs_list(
    open_session, screenshot, worker, operator, credit_version, viewport
):
    start(credit_version, operator, {"customer_id": "cust_anna"})
    worker.drain()
    page = open_session(operator, viewport=viewport)
    page.goto("/runs/")
    started = page.locator('td[data-label="Started"] time').first
    expect(started).to_have_text(re.compile(r"^(just now|\d+ min ago)$"))
    expect(started).to_have_attribute("title", re.compile(r" UTC \(UTC\+00:00\)$"))
    if viewport is PHONE:
        page.goto("/account/time-zone/")
    else:
        page.locator("header .user").get_by_role("link", name="Time zone").click()
    expect(page).to_have_title("Time zone · Rapidfolio")
    page.get_by_label("Time zone").select_option("Asia/Tokyo")
    page.get_by_role("button", name="Save time zone").click()
    expect(page.get_by_text("Times are now shown in Asia/Tokyo.")).to_be_visible()
    expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
    screenshot(page, "time-zone-page")
    page.goto("/runs/")
    expect(started).to_have_attribute(
        "title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Asia/Tokyo \(UTC\+09:00\)$")
    )
    started.hover()  # the absolute moment is its title, what the browser shows on hover
    screenshot(page, "runs-in-tokyo")
    page.goto(page.get_by_role("link", name=re.compile(r"^run_")).first.get_attribute("href"))
    expect(page.locator(".run-header time").first).to_have_attribute(
        "title", re.compile(r"Asia/Tokyo \(UTC\+09:00\)$")
    )


def test_an_unknown_time_zone_is_a_form_error(open_session, screenshot, operator):
    page = open_session(operator, viewport=WIDE)
    page.goto("/account/time-zone/")
    # A crafted choice the select does not offer, as a stale or tampered page would send.
    page.evaluate(
        "() => { const s = document.querySelector('select[name=time_zone]');"
        " s.add(new Option('Mars/Olympus_Mons')); s.value = 'Mars/Olympus_Mons'; }"
    )
    page.get_by_role("button", name="Save time zone").click()
    expect(page.get_by_text("“Mars/Olympus_Mons” is not a time zone we know")).to_be_visible()
    screenshot(page, "time-zone-error")


def test_relative_times_stay_true_on_a_page_left_open(
    open_session, worker, operator, credit_version
):
    start(credit_version, operator, {"customer_id": "cust_anna"})
    worker.drain()
    page = open_session(operator, viewport=WIDE)
    page.clock.install()
    page.goto("/runs/")
    started = page.locator('td[data-label="Started"] time').first
    expect(started).to_have_text("just now")
    page.clock.fast_forward("05:30")  # 5 min 30 s: the 30 s refresh has run
    expect(started).to_have_text("5 min ago")


def test_the_script_words_times_as_the_server_does(open_session, operator):
    page = open_session(operator, viewport=WIDE)
    page.goto("/runs/")
    for seconds, words in RELATIVE:
        assert page.evaluate(f"window.rapidfolioTimes.relative({seconds})") == words
    for seconds, words in WAITED:
        assert page.evaluate(f"window.rapidfolioTimes.waited({seconds})") == words
