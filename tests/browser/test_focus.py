"""Where the keyboard focus goes (issue 16, point 6; WCAG 2.4.1 and 2.4.3): a skip link first,
into the new tab panel after a tab switch, and to the first invalid field after a failed form,
with JavaScript (htmx swaps) and without it (full page loads)."""

import re

import pytest
from playwright.sync_api import expect

from runs import engine
from runs.services import start_run
from tests.browser.conftest import PASSWORD, PHONE
from tests.conftest import make_version
from tests.test_dashboard_runs import CREDIT_CHECK, PAYMENT_WITH_REVIEW

INVOICE = {"invoice_id": "INV-1001", "customer_id": "cus_acme", "amount": 700000, "currency": "usd"}


@pytest.fixture
def payment(transactional_db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


@pytest.fixture
def completed_run(transactional_db, operator):
    version = make_version(CREDIT_CHECK, name="Credit check")
    run = start_run(
        version=version,
        environment="sandbox",
        inputs={"customer_id": "cust_anna"},
        type="manual",
        user=operator,
    )
    engine.drive(run.pk)
    return run


@pytest.fixture
def paused_run(payment, operator):
    run = start_run(
        version=payment, environment="sandbox", inputs=INVOICE, type="manual", user=operator
    )
    engine.drive(run.pk)
    return run


def focused(page):
    return page.locator("*:focus")


def test_the_skip_link_is_the_first_tab_stop_and_moves_focus_to_the_main_content(
    open_session, screenshot, operator, completed_run
):
    page = open_session(operator, viewport=PHONE)
    page.goto(f"/runs/{completed_run.public_id}/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # hidden until focused, then shown
    screenshot(page, "skip-link")
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()
    page.keyboard.press("Tab")  # the next stop is inside the page, past the top bar
    expect(focused(page)).to_have_count(1)
    assert page.evaluate("document.activeElement.closest('main') !== null")


def test_switching_tab_moves_focus_into_the_new_tab_panel(
    open_session, screenshot, operator, completed_run
):
    page = open_session(operator)
    page.goto(f"/runs/{completed_run.public_id}/")
    tabs = page.get_by_role("navigation", name="Run record")
    expect(tabs.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    tabs.get_by_role("link", name="Inputs").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/runs/{completed_run.public_id}/inputs/$"))
    panel = page.get_by_role("region", name="Inputs", exact=True)
    expect(panel).to_be_focused()
    expect(tabs.get_by_role("link", name="Inputs")).to_have_attribute("aria-current", "page")
    screenshot(page, "inputs-tab")
    # The next Tab goes on from the panel, into its content, not back to the top of the page.
    page.keyboard.press("Tab")
    assert page.evaluate("document.getElementById('tab-panel').contains(document.activeElement)")
    tabs.get_by_role("link", name="Step Log").click()
    expect(page.get_by_role("region", name="Step Log", exact=True)).to_be_focused()


def test_a_failed_run_form_moves_focus_to_its_first_invalid_field(
    open_session, screenshot, operator, payment
):
    page = open_session(operator)
    page.goto(f"/procedures/{payment.procedure.public_id}/")
    # Two fields left valid, two empty. The fields' order on the page is the schema's (which
    # PostgreSQL's jsonb keeps in its own order), so the first invalid one is read from the page.
    page.get_by_label("Invoice number").fill("INV-2024")
    page.get_by_label("Currency").select_option("usd")
    page.get_by_role("button", name="Run", exact=True).click()
    invalid = page.locator('#run-form [aria-invalid="true"]')
    expect(invalid).to_have_count(2)
    expect(invalid.first).to_be_focused()
    expect(invalid.first).to_have_accessible_description(re.compile("This field is required"))
    expect(page.get_by_label("Invoice number")).not_to_have_attribute("aria-invalid", "true")
    assert {invalid.nth(0).get_attribute("name"), invalid.nth(1).get_attribute("name")} == {
        "customer_id",
        "amount",
    }
    screenshot(page, "run-form-errors")


def test_without_javascript_a_failed_run_form_still_focuses_its_first_invalid_field(
    browser, live_server, screenshot, operator, payment
):
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/login/")
        page.get_by_label("Username").fill(operator.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"/procedures/{payment.procedure.public_id}/")
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page).to_have_url(re.compile(r"/run/$"))  # a full page, answered by the server
        first_invalid = page.locator('[aria-invalid="true"]').first
        expect(first_invalid).to_be_focused()
        expect(first_invalid).to_have_attribute("autofocus", "")
        expect(page.locator("[autofocus]")).to_have_count(1)
        screenshot(page, "run-form-errors-no-js")
    finally:
        context.close()


def test_a_rejection_without_a_reason_moves_focus_to_the_reason(
    open_session, screenshot, reviewer, paused_run
):
    page = open_session(reviewer)
    page.goto(f"/runs/{paused_run.public_id}/")
    page.get_by_text("Reject this run…").click()
    page.get_by_role("button", name="Reject", exact=True).click()
    reason = page.get_by_label("Reason")
    expect(reason).to_be_focused()
    expect(reason).to_have_attribute("aria-invalid", "true")
    screenshot(page, "reject-errors")
