"""The dashboard in Chromium, driven by accessible names, with a real worker executing runs."""

import re

import pytest
from playwright.sync_api import expect

from reviews.models import ReviewRequest
from runs.models import Run
from runs.services import start_run
from tests.browser.conftest import PHONE, crafted_post
from tests.conftest import make_version
from tests.test_dashboard_runs import CREDIT_CHECK, PAYMENT_WITH_REVIEW

RUN_DONE = 20_000  # ms: the worker and the page's 2 s polling both need a moment


@pytest.fixture
def review_version(transactional_db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


@pytest.fixture
def credit_version(transactional_db):
    return make_version(CREDIT_CHECK, name="Credit check")


def start(version, user, inputs):
    return start_run(
        version=version, environment="sandbox", inputs=inputs, type="manual", user=user
    )


def test_operator_runs_a_reviewed_procedure_and_a_reviewer_overrides_and_approves(
    open_session, screenshot, worker, operator, reviewer, review_version
):
    page = open_session(operator)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Procedures").click()
    page.get_by_role("link", name="Pay invoice").click()
    page.get_by_label("Invoice number").fill("INV-2024")
    page.get_by_label("Customer").fill("cus_acme")
    page.get_by_label("Currency").select_option("usd")
    # The amount is typed as money; its label follows the chosen currency.
    page.get_by_label("Amount (USD)").fill("7,000.00")
    screenshot(page, "procedure")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r"/runs/run_\w+/$"))
    expect(page.locator("#run-status")).to_have_text("Awaiting review", timeout=RUN_DONE)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    run = Run.objects.get()

    review_page = open_session(reviewer)
    reviews_link = review_page.get_by_role("navigation", name="Main").get_by_role(
        "link", name=re.compile(r"^Reviews")
    )
    expect(reviews_link).to_contain_text("1")
    reviews_link.click()
    expect(review_page.get_by_role("cell", name=re.compile(r"USD.7,000\.00"))).to_be_visible()
    screenshot(review_page, "review-queue")
    review_page.get_by_role("link", name="Review", exact=True).click()
    expect(review_page.get_by_role("heading", name="Approve invoice payment")).to_be_visible()
    review_page.get_by_label("Amount (USD)").fill("6500.00")
    review_page.get_by_label("Comment").fill("Customer agreed to a partial payment")
    screenshot(review_page, "review-panel")
    review_page.get_by_role("button", name="Approve", exact=True).click()
    # An override is confirmed, before -> after, before it is recorded.
    expect(review_page.get_by_role("region", name="Confirm your approval")).to_contain_text(
        "USD\u00a06,500.00"
    )
    review_page.get_by_role("button", name="Confirm approval").click()
    expect(review_page.get_by_text("Approved; the run continues.")).to_be_visible()
    expect(review_page.locator("#run-status")).to_have_text("Completed", timeout=RUN_DONE)
    screenshot(review_page, "run-completed")

    review_page.get_by_role("link", name="Step Log").click()
    expect(review_page).to_have_url(re.compile(rf"/runs/{run.public_id}/step-log/$"))
    expect(review_page.locator("#step-1")).to_contain_text("amount: USD 7,000.00 → USD 6,500.00")
    review_page.locator("#step-2").get_by_text("Request sent").click()
    expect(review_page.locator("#step-2 pre.json").nth(2)).to_contain_text('"amount": 650000')
    screenshot(review_page, "step-log")
    review_page.get_by_role("link", name="Events").click()
    # Shown as money, in the currency of what the reviewer saw (issue 13); the JSON stays raw.
    expect(review_page.locator(".timeline")).to_contain_text("amount: USD 7,000.00 → USD 6,500.00")
    screenshot(review_page, "events")
    # The operator's page, still open, followed the run to its end on its own.
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN_DONE)


def test_filters_narrow_the_list_and_survive_a_reload(
    open_session, screenshot, worker, operator, credit_version
):
    good = start(credit_version, operator, {"customer_id": "cust_anna"})
    bad = start(credit_version, operator, {"customer_id": "cust_blocked"})
    worker.drain()
    page = open_session(operator)
    page.goto("/runs/")
    expect(page.get_by_role("link", name=good.public_id)).to_be_visible()
    page.get_by_label("Failed").check()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.get_by_role("link", name=good.public_id)).to_have_count(0)
    expect(page.get_by_role("link", name=bad.public_id)).to_be_visible()
    page.get_by_label("Environment").select_option("sandbox")
    expect(page).to_have_url(re.compile(r"environment=sandbox"))
    page.reload()
    expect(page.get_by_label("Failed")).to_be_checked()
    expect(page.get_by_label("Environment")).to_have_value("sandbox")
    expect(page.get_by_role("link", name=bad.public_id)).to_be_visible()
    expect(page.get_by_role("link", name=good.public_id)).to_have_count(0)
    screenshot(page, "runs-filtered")
    page.get_by_label("Cancelled").check()
    page.get_by_label("Failed").uncheck()
    expect(page.get_by_text("No runs match these filters.")).to_be_visible()
    page.get_by_role("link", name="Clear the filters").click()
    expect(page.get_by_role("link", name=good.public_id)).to_be_visible()


def test_transient_failure_is_retried_into_a_new_run(
    open_session, screenshot, worker, operator, credit_version
):
    failed = start(credit_version, operator, {"customer_id": "cust_timeout"})
    worker.drain()
    page = open_session(operator)
    page.goto(f"/runs/{failed.public_id}/output/")
    expect(page.locator("#run-status")).to_have_text("Failed")
    expect(page.get_by_text("Transient", exact=True)).to_be_visible()
    screenshot(page, "failed-output")
    page.get_by_role("button", name="Retry").click()
    # Retry lands on the new run (tests/browser/test_landing_and_time_browser.py has more).
    expect(page.get_by_text("started as a retry of")).to_be_visible()
    retry = Run.objects.get(retry_of=failed)
    expect(page).to_have_url(re.compile(rf"/runs/{retry.public_id}/$"))
    expect(page.get_by_text(f"Run {retry.public_id} started as a retry of")).to_be_visible()
    expect(page.get_by_role("link", name=failed.public_id)).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("Failed", timeout=RUN_DONE)
    screenshot(page, "retry")


def test_pending_run_is_cancelled(
    open_session, screenshot, transactional_db, operator, credit_version
):
    # No worker in this test: the run stays pending until someone acts on it.
    run = start(credit_version, operator, {"customer_id": "cust_anna"})
    page = open_session(operator)
    page.goto(f"/runs/{run.public_id}/")
    expect(page.locator("#run-status")).to_have_text("Pending")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#run-status")).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    screenshot(page, "cancelled")
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_dismissing_the_confirmation_keeps_the_run(
    open_session, transactional_db, operator, credit_version
):
    run = start(credit_version, operator, {"customer_id": "cust_anna"})
    page = open_session(operator)
    page.goto(f"/runs/{run.public_id}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    run.refresh_from_db()
    assert run.status == "pending"


def test_operator_cannot_approve_their_own_run(
    open_session, screenshot, worker, operator_reviewer, review_version
):
    inputs = {"invoice_id": "INV-9", "customer_id": "cus_acme", "amount": 900000, "currency": "usd"}
    run = start(review_version, operator_reviewer, inputs)
    worker.drain()
    page = open_session(operator_reviewer)
    page.goto(f"/runs/{run.public_id}/")
    expect(page.locator("#run-status")).to_have_text("Awaiting review")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_text("another person must review it")).to_be_visible()
    screenshot(page, "own-run")
    review = ReviewRequest.objects.get(run=run)
    response = crafted_post(page, f"/reviews/{review.public_id}/approve/", {"override_amount": "1"})
    assert response.status == 403
    assert "You started this run; another person must review it" in response.text()
    run.refresh_from_db()
    assert run.status == "awaiting_review"


def test_pages_fit_a_phone_screen(
    open_session, screenshot, worker, operator, reviewer, review_version
):
    inputs = {"invoice_id": "INV-5", "customer_id": "cus_acme", "amount": 800000, "currency": "eur"}
    run = start(review_version, operator, inputs)
    worker.drain()
    page = open_session(reviewer, viewport=PHONE)
    for name, path in [
        ("runs", "/runs/"),
        ("run", f"/runs/{run.public_id}/"),
        ("step-log", f"/runs/{run.public_id}/step-log/"),
        ("reviews", "/reviews/"),
        ("procedure", f"/procedures/{run.procedure.public_id}/"),
    ]:
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
        screenshot(page, f"phone-{name}")
