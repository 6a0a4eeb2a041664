"""The Runs list's search and its rows in Chromium: typing finds runs by reference or id, the URL
keeps `?q=`, the references and amount are columns, and a run under way updates its own row
when the embedded worker finishes it."""

import re

import dramatiq
import pytest
from django.db import connection, transaction
from playwright.sync_api import expect

from rapidfolio import broker as embedded
from runs.models import RunType
from runs.services import start_run
from tests.conftest import make_version
from tests.factories import force_status
from tests.test_run_search import INVOICE_DEFINITION

WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
ROW_SETTLES = 15_000  # ms: the worker, then the row's next 3 s poll


@pytest.fixture
def invoice_version(transactional_db):
    return make_version(INVOICE_DEFINITION, name="Pay invoice")


def start(version, invoice_id, customer_id, amount=2400000, currency="usd"):
    inputs = {"invoice_id": invoice_id, "customer_id": customer_id, "amount": amount}
    return start_run(
        version=version,
        environment="sandbox",
        inputs={**inputs, "currency": currency},
        type=RunType.API,
    )


@pytest.fixture
def settled_invoices(invoice_version):
    """Three completed runs (no worker: they are walked there), newest last."""
    dramatiq.get_broker().flush_all()
    runs = []
    for invoice, customer, amount, currency in [
        ("INV-1001", "cus_acme_metals", 2400000, "usd"),
        ("INV-1002", "cus_nordic_parts", 150000, "eur"),
        ("INV-2001", "cus_acme_foods", 9900, "jpy"),
    ]:
        with transaction.atomic():
            run = start(invoice_version, invoice, customer, amount, currency)
            runs.append(force_status(run, "completed"))
    dramatiq.get_broker().flush_all()  # their execution messages: nothing is left to run
    return runs


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
def test_typing_in_the_search_box_narrows_the_list_and_keeps_q_in_the_url(
    open_session, screenshot, operator, settled_invoices, viewport
):
    page = open_session(operator, viewport=viewport)
    page.goto("/runs/")
    rows = page.locator("#run-results tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#run-results")).to_contain_text("USD\u00a024,000.00")
    expect(page.locator("#run-results")).to_contain_text("JPY\u00a09,900")
    screenshot(page, "all")

    search = page.get_by_role("searchbox", name="Search")
    search.press_sequentially("acme", delay=60)
    expect(rows).to_have_count(2)
    expect(page).to_have_url(re.compile(r"[?&]q=acme\b"))
    expect(page.locator("#run-results")).not_to_contain_text("INV-1002")
    expect(search).to_be_focused()  # the results swapped, the box kept the typing
    screenshot(page, "acme")

    search.fill("INV-1002")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("cus_nordic_parts")
    expect(rows.first).to_contain_text("EUR\u00a01,500.00")
    expect(page).to_have_url(re.compile(r"[?&]q=INV-1002\b"))

    # The URL is the search: reloaded or shared, it shows the same runs and the same box.
    page.reload()
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("INV-1002")
    expect(rows).to_have_count(1)

    search = page.get_by_role("searchbox", name="Search")
    search.fill(settled_invoices[0].public_id[:18])
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("INV-1001")
    # Too short to search: the box's minlength stops the request (the server would answer with
    # the same rule as a form error, tests/test_run_search.py), so the results stay.
    search.fill("ab")
    page.wait_for_timeout(800)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("INV-1001")


def test_a_run_under_way_updates_its_own_row_when_the_worker_finishes_it(
    open_session, screenshot, operator, invoice_version
):
    broker = dramatiq.get_broker()
    broker.flush_all()
    # Started with no worker running: its message waits in the queue, the run stays pending.
    run = start(invoice_version, "INV-7001", "cus_waiting")
    page = open_session(operator, viewport=WIDE)
    page.goto("/runs/")
    row = page.locator(f"#row-{run.public_id}")
    expect(row).to_contain_text("Pending")
    expect(row).to_have_attribute("hx-trigger", "every 3s")
    screenshot(page, "pending")

    worker = embedded.start_worker(threads=2)
    try:
        expect(row).to_contain_text("Completed", timeout=ROW_SETTLES)
    finally:
        worker.stop()
        connection.close()
    # Settled: the row no longer polls, and the page did not reload around it.
    expect(row).not_to_have_attribute("hx-trigger", re.compile(".*"))
    expect(row).to_contain_text("INV-7001")
    expect(row).to_contain_text("USD\u00a024,000.00")
    screenshot(page, "completed")
