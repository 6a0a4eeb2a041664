"""Money and the live Run form in Chromium: the form changes when Live is chosen, a live run
starts only from its confirmation, and that confirmation names the environment and the amount.

No worker runs here: the live run is started and stays pending, so nothing calls Stripe.
"""

import re

import pytest
from playwright.sync_api import expect

from procedures.models import Connection
from runs.models import Run
from tests.conftest import make_version
from tests.test_dashboard_runs import PAYMENT_WITH_REVIEW


@pytest.fixture
def review_version(transactional_db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


@pytest.fixture
def stripe_live(transactional_db):
    return Connection.objects.create(
        integration="stripe", environment="live", name="Acme Stripe (live)"
    )


def fill_invoice(page):
    page.get_by_label("Invoice number").fill("INV-2024")
    page.get_by_label("Customer").fill("cus_acme")
    page.get_by_label("Currency").select_option("usd")
    page.get_by_label("Amount (USD)").fill("24,000.00")


def test_a_live_run_is_marked_on_the_form_and_starts_only_once_confirmed(
    open_session, screenshot, live_operator, review_version, stripe_live
):
    page = open_session(live_operator)
    page.goto(f"/procedures/{review_version.procedure.public_id}/")
    fill_invoice(page)
    notice = page.locator(".live-notice")
    expect(notice).to_be_hidden()
    expect(page.get_by_role("button", name="Run", exact=True)).to_be_visible()

    page.get_by_label("Live", exact=True).check()
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("This run uses the real integrations.")
    expect(page.get_by_role("button", name="Review live run")).to_be_visible()
    screenshot(page, "live-form")

    page.get_by_role("button", name="Review live run").click()
    heading = page.get_by_role("heading", name=re.compile(r"Start a live run of Pay invoice"))
    expect(heading).to_contain_text("USD 24,000.00")
    expect(page.locator(".live-confirmation")).to_contain_text("Environment: Live")
    expect(page.locator(".live-confirmation")).to_contain_text("Acme Stripe (live)")
    screenshot(page, "live-confirmation")
    assert not Run.objects.exists()

    page.get_by_role("button", name="Change values").click()
    expect(page.get_by_label("Amount (USD)")).to_have_value("24,000.00")
    page.get_by_role("button", name="Review live run").click()
    page.get_by_role("button", name="Start live run").click()
    page.wait_for_url(re.compile(r"/runs/run_\w+/$"))
    run = Run.objects.get()
    assert run.environment == "live" and run.inputs["amount"] == 2400000
    expect(page.locator(".run-header")).to_contain_text("Live")
    screenshot(page, "live-run")


def test_live_without_a_connection_is_refused_on_the_form(
    open_session, live_operator, review_version
):
    page = open_session(live_operator)
    page.goto(f"/procedures/{review_version.procedure.public_id}/")
    fill_invoice(page)
    page.get_by_label("Live", exact=True).check()
    expect(page.locator(".live-notice")).to_contain_text("Live is not available")
    page.get_by_role("button", name="Review live run").click()
    expect(page.locator(".has-error")).to_contain_text("needs a live connection for “stripe”")
    assert not Run.objects.exists()
