"""The picture of a run in Chromium (issue 16, point 5): the Overview draws the procedure's nodes
with the path taken, a node's retries under it, a decline as a business outcome; each node
links to its steps. Screenshots at desktop (1440x900) and phone (390x844) width."""

import re
from pathlib import Path

import axe_playwright_python
import pytest
from playwright.sync_api import expect

from runs.services import start_run
from tests.test_run_picture import credit_run, demo_version, finish

AXE_SOURCE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": WIDE, "phone": PHONE}


def serious_axe_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the page (WCAG 2.1 A/AA, best practice)."""
    page.evaluate(AXE_SOURCE)  # evaluated, not a script tag: the CSP allows no inline script
    tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
    results = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", tags
    )
    return [
        f"{v['id']}: {node['target']}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
        for node in v["nodes"]
    ]


@pytest.fixture
def retried(transactional_db):
    return credit_run("cust_flaky_1")


@pytest.fixture
def declined(transactional_db):
    return credit_run("cust_dan")


@pytest.mark.parametrize("width", VIEWPORTS)
def test_a_retried_node_reads_succeeded_on_attempt_3_and_links_to_its_steps(
    open_session, screenshot, operator, retried, width
):
    page = open_session(operator, viewport=VIEWPORTS[width])
    page.goto(f"/runs/{retried.public_id}/")
    picture = page.get_by_role("region", name="Path through the procedure")
    credit = picture.locator(".pnode", has=page.get_by_role("link", name="credit", exact=True))
    expect(credit).to_contain_text("Succeeded on attempt 3")
    expect(credit.locator(".pattempt")).to_have_count(3)
    expect(credit.locator(".pattempt-error")).to_have_count(2)
    expect(picture.locator(".pbranch.taken")).to_contain_text("If true")
    expect(picture.locator(".pnode-not_taken")).to_have_count(2)
    assert serious_axe_violations(page) == []
    screenshot(page, "overview")

    picture.get_by_role("link", name="credit", exact=True).click()
    expect(page).to_have_url(re.compile(r"/step-log/#step-1$"))
    group = page.locator(".step-group")
    expect(group).to_have_count(1)
    expect(group).to_contain_text("Succeeded on attempt 3")
    expect(group.locator(".attempt-item")).to_have_count(2)
    assert serious_axe_violations(page) == []
    screenshot(page, "step-log")


@pytest.mark.parametrize("width", VIEWPORTS)
def test_a_declined_credit_check_reads_declined_not_failed(
    open_session, screenshot, operator, declined, width
):
    page = open_session(operator, viewport=VIEWPORTS[width])
    page.goto(f"/runs/{declined.public_id}/")
    panel = page.locator(".tab-panel")
    expect(panel.locator(".badge.outcome").first).to_have_text("Business outcome: Declined")
    expect(panel).to_contain_text("the procedure's answer, not a technical failure")
    picture = page.get_by_role("region", name="Path through the procedure")
    expect(picture.locator(".pnode-business")).to_contain_text("Declined")
    expect(picture.locator(".pnode-failed")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    assert serious_axe_violations(page) == []
    screenshot(page, "overview")


def test_a_run_waiting_for_review_shows_where_it_waits(
    open_session, screenshot, operator, transactional_db
):
    run = finish(
        start_run(
            version=demo_version("pay_invoice"),
            environment="sandbox",
            type="api",
            inputs={
                "invoice_id": "INV-2041",
                "customer_id": "cus_acme",
                "amount": 2_400_000,
                "currency": "usd",
            },
        )
    )
    page = open_session(operator, viewport=WIDE)
    page.goto(f"/runs/{run.public_id}/")
    picture = page.get_by_role("region", name="Path through the procedure")
    expect(picture.locator(".pnode-waiting")).to_contain_text("Waiting for review")
    expect(picture.locator(".pnode-not_reached")).to_have_count(2)
    expect(picture.locator(".pnode-not_taken")).to_have_count(2)
    assert serious_axe_violations(page) == []
    screenshot(page, "overview")
