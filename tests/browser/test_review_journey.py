"""A finance controller's review journey in Chromium, on the demo's Pay invoice procedure: two
approvers above 50,000.00, a decrease-only amount confirmed before -> after, a possible
duplicate flagged, and a rejection that needs a reason and a confirmation."""

import re

import pytest
import yaml
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from procedures.demo import DEMO_DIR
from rapidfolio.roles import REVIEWERS
from reviews.models import ReviewRequest
from runs.models import Run
from runs.services import start_run
from tests.conftest import make_user, make_version

RUN_DONE = 20_000  # ms: the worker and the page's 2 s polling both need a moment
INVOICE = {
    "invoice_id": "INV-7001",
    "customer_id": "cus_acme",
    "amount": 7_500_000,
    "currency": "usd",
}


@pytest.fixture
def pay_invoice(transactional_db):
    document = yaml.safe_load((DEMO_DIR / "pay_invoice.yaml").read_text())
    return make_version(document["definition"], name=document["name"])


@pytest.fixture
def approvers(transactional_db, reviewer, second_reviewer):
    group = Group.objects.create(name="Payment approvers")
    for person in (reviewer, second_reviewer):
        person.groups.add(group)
    return reviewer, second_reviewer


def start(version, user):
    return start_run(
        version=version, environment="sandbox", inputs=INVOICE, type="manual", user=user
    )


def test_two_approvers_a_decrease_only_override_and_a_flagged_duplicate(
    open_session, screenshot, worker, operator, approvers, pay_invoice
):
    rita, ravi = approvers
    first, twin = start(pay_invoice, operator), start(pay_invoice, operator)
    worker.drain()
    assert {Run.objects.get(pk=r.pk).status for r in (first, twin)} == {"awaiting_review"}

    page = open_session(rita)
    page.goto("/reviews/")
    row = page.get_by_role("row", name=re.compile(rf"^Approve invoice payment {first.public_id}"))
    expect(row).to_contain_text("USD\u00a075,000.00")
    expect(row).to_contain_text("0 of 2")
    expect(row).to_contain_text("Possible duplicate")
    expect(row).to_contain_text("in 23 h")  # the 24 h deadline, relative (rapidfolio/moments.py)
    expect(row.locator('td[data-label="Waiting"] time')).to_have_text(
        re.compile(r"^(under 1 min|\d+ min)$")
    )
    screenshot(page, "queue")

    page.goto(f"/runs/{first.public_id}/")
    panel = page.locator("#review-panel")
    expect(panel.get_by_role("alert")).to_contain_text("Possible duplicate. The same values")
    expect(panel.get_by_role("link", name=twin.public_id)).to_be_visible()
    amount = page.get_by_label("Amount (USD)")
    expect(amount).to_have_value("75000.00")
    amount.fill("80000.00")
    page.get_by_label("Comment").fill("Customer asked to add a late fee")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_text("You may only lower amount from USD\u00a075,000.00")).to_be_visible()
    page.get_by_label("Amount (USD)").fill("70000.00")
    page.get_by_label("Comment").fill("")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_text("Say why you changed amount")).to_be_visible()
    page.get_by_label("Comment").fill("Partial payment agreed with the customer")
    page.get_by_role("button", name="Approve", exact=True).click()

    confirmation = page.get_by_role("region", name="Confirm your approval")
    expect(confirmation).to_contain_text("USD\u00a070,000.00")
    expect(confirmation).to_contain_text("−USD\u00a05,000.00 (−6.7 %)")
    expect(confirmation).to_contain_text("You are approving USD\u00a070,000.00 to cus_acme")
    screenshot(page, "confirm-override")
    assert not ReviewRequest.objects.get(run=first).decisions.exists()
    page.get_by_role("button", name="Confirm approval").click()
    expect(page.get_by_text("Approved (1 of 2)")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("Awaiting review")

    second = open_session(ravi)
    second.goto(f"/runs/{first.public_id}/")
    expect(second.locator("#review-panel")).to_contain_text(
        "(was USD\u00a075,000.00; changed by rita)"
    )
    expect(second.get_by_label("Amount (USD)")).to_have_count(0)
    second.get_by_role("button", name="Approve", exact=True).click()
    second.get_by_role("button", name="Confirm approval").click()
    expect(second.get_by_text("Approved; the run continues.")).to_be_visible()
    expect(second.locator("#run-status")).to_have_text("Completed", timeout=RUN_DONE)
    second.get_by_role("link", name="Step Log").click()
    expect(second.locator("#step-2")).to_contain_text("USD\u00a070,000.00")
    screenshot(second, "second-approval")
    # rita's page, still open, followed the run to its end on its own.
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN_DONE)


def test_a_duplicate_is_rejected_with_a_reason_and_a_confirmation(
    open_session, screenshot, worker, operator, approvers, pay_invoice
):
    rita, _ = approvers
    first, twin = start(pay_invoice, operator), start(pay_invoice, operator)
    worker.drain()
    page = open_session(rita)
    page.goto(f"/runs/{twin.public_id}/")
    page.get_by_text("Reject this run…").click()
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(page.get_by_text("Give the reason for rejecting.")).to_be_visible()
    page.get_by_label("Reason for rejecting").fill(f"Duplicate of run {first.public_id}")
    page.get_by_role("button", name="Reject", exact=True).click()
    confirmation = page.get_by_role("region", name="Confirm the rejection")
    expect(confirmation).to_contain_text("A rejected run cannot be retried")
    screenshot(page, "confirm-rejection")
    page.get_by_role("button", name="Confirm rejection").click()
    expect(page.get_by_text("Rejected; the run has failed.")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("Failed")
    twin.refresh_from_db()
    assert twin.failure_reason == f"Rejected by rita: Duplicate of run {first.public_id}"


def test_an_approver_outside_the_group_is_told_who_decides(
    open_session, worker, operator, approvers, pay_invoice
):
    outsider = make_user("otto", REVIEWERS)
    run = start(pay_invoice, operator)
    worker.drain()
    page = open_session(outsider)
    page.goto(f"/runs/{run.public_id}/")
    expect(
        page.get_by_text("Only members of Payment approvers may decide this review.")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
