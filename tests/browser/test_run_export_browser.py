"""The Runs list's Export in Chromium: the download holds the runs the filters on screen select."""

import csv
import datetime
import json
import re

import pytest
from playwright.sync_api import expect

from rapidfolio.roles import LIVE_ENVIRONMENT, OPERATORS
from tests.browser.conftest import PHONE
from tests.conftest import make_user, make_version
from tests.test_run_export import DAY, INVOICE_DEFINITION, make_run, newest_first

WIDE = {"width": 1440, "height": 900}


@pytest.fixture
def listed_runs(transactional_db):
    version = make_version(INVOICE_DEFINITION, name="Pay invoice")
    statuses = ["completed", "failed", "completed", "cancelled", "failed", "completed"]
    return [
        make_run(
            version,
            at=DAY - datetime.timedelta(hours=number),
            status=status,
            inputs={
                "amount": 1000 * (number + 1),
                "currency": "usd",
                "invoice": f"INV-{number}",
                "payee": "Acme",
            },
        )
        for number, status in enumerate(statuses)
    ]


@pytest.fixture
def auditor(transactional_db):
    return make_user("lena", OPERATORS, LIVE_ENVIRONMENT)


def test_export_csv_downloads_the_runs_of_the_filter_just_chosen(
    open_session, screenshot, auditor, listed_runs, tmp_path
):
    page = open_session(auditor, viewport=WIDE)
    page.goto("/runs/")
    export_csv = page.get_by_role("link", name="Export CSV")
    expect(export_csv).to_be_visible()
    screenshot(page, "list-wide")

    # The filter applies by an HTMX swap of the results only; the link follows it.
    page.get_by_role("checkbox", name="Failed").check()
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.get_by_role("row")).to_have_count(3)  # the header and two failed runs
    expect(export_csv).to_have_attribute("href", "/runs/export.csv?status=failed")
    with page.expect_download() as downloading:
        export_csv.click()
    download = downloading.value

    assert re.fullmatch(r"runs_exported-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["run_id"] for row in rows] == newest_first(
        run for run in listed_runs if run.status == "failed"
    )
    assert {row["status"] for row in rows} == {"failed"}
    assert rows[0]["reference.invoice"] == "INV-1"  # the newest failed run
    assert rows[0]["amount"] == "20.00" and rows[0]["currency"] == "USD"


def test_export_json_lines_from_a_filtered_address_on_a_phone(
    open_session, screenshot, auditor, listed_runs, tmp_path
):
    page = open_session(auditor, viewport=PHONE)
    page.goto("/runs/?status=completed&created_from=2026-11-01&created_to=2026-11-02")
    export_json = page.get_by_role("link", name="Export JSON Lines")
    expect(export_json).to_be_visible()
    screenshot(page, "list-phone")

    with page.expect_download() as downloading:
        export_json.click()
    download = downloading.value

    assert download.suggested_filename.startswith("runs_2026-11-01-to-2026-11-02_exported-")
    path = tmp_path / "runs.jsonl"
    download.save_as(path)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["run_id"] for line in lines] == newest_first(
        run for run in listed_runs if run.status == "completed"
    )
    assert all(isinstance(line["amount_minor"], int) for line in lines)
