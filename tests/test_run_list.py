"""The Runs list read (runs.selectors.list_runs): newest first, keyset pages, filters combined.

Several statuses are read as each status's newest runs merged (see _newest_of_each_status);
these tests pin that the merge gives exactly the rows and order of the plain filter, page after
page, including runs that share a creation time.
"""

import datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import selectors
from runs.models import Run, RunType
from runs.services import start_run
from tests.conftest import SIMPLE_DEFINITION, make_version, needs_postgres
from tests.factories import force_status

STATUS_CYCLE = ["completed", "failed", "pending", "cancelled", "completed", "running"]


@pytest.fixture
def mixed_runs(simple_version):
    """36 runs over two procedures and both environments, of six statuses in turn, created at
    twelve moments, three runs to a moment (ties broken by id)."""
    other_version = make_version(SIMPLE_DEFINITION, name="Close account")
    base = timezone.now() - datetime.timedelta(days=30)
    runs = []
    for number in range(36):
        run = start_run(
            version=other_version if number % 4 == 0 else simple_version,
            environment="live" if number % 5 == 0 else "sandbox",
            inputs={"amount": number + 1, "currency": "usd"},
            type=RunType.API,
        )
        moment = base + datetime.timedelta(days=(number // 3) * 2)
        Run.objects.filter(pk=run.pk).update(created_at=moment)
        runs.append(force_status(run, STATUS_CYCLE[number % len(STATUS_CYCLE)]))
    return runs


def expected(runs, keep) -> list[str]:
    chosen = [run for run in runs if keep(run)]
    chosen.sort(key=lambda run: (run.created_at, run.pk), reverse=True)
    return [run.public_id for run in chosen]


def all_pages(params, page_size) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = selectors.list_runs(params, cursor=cursor, page_size=page_size)
        assert not page.filter.form.errors
        pages.append([run.public_id for run in page.runs])
        if not page.has_next:
            return pages
        cursor = page.next_cursor


@pytest.mark.parametrize("page_size", [1, 4, 5, 50])
def test_several_statuses_page_through_exactly_the_matching_runs_newest_first(
    mixed_runs, page_size
):
    pages = all_pages({"status": ["failed", "cancelled", "pending"]}, page_size)
    wanted = expected(mixed_runs, lambda run: run.status in ("failed", "cancelled", "pending"))
    assert [public_id for page in pages for public_id in page] == wanted
    assert all(len(page) == page_size for page in pages[:-1])
    assert len(wanted) == 18


def test_several_statuses_combine_with_the_other_filters(mixed_runs, simple_version):
    start = timezone.localdate(mixed_runs[6].created_at).isoformat()
    end = timezone.localdate(mixed_runs[27].created_at).isoformat()
    params = {
        "status": ["completed", "running"],
        "procedure": simple_version.procedure.public_id,
        "environment": "sandbox",
        "created_from": start,
        "created_to": end,
    }
    wanted = expected(
        mixed_runs,
        lambda run: (
            run.status in ("completed", "running")
            and run.version_id == simple_version.pk
            and run.environment == "sandbox"
            and start <= timezone.localdate(run.created_at).isoformat() <= end
        ),
    )
    assert 0 < len(wanted) < 12
    assert [public_id for page in all_pages(params, 2) for public_id in page] == wanted


def test_a_status_with_no_runs_leaves_the_others(mixed_runs):
    pages = all_pages({"status": ["awaiting_review", "failed"]}, 50)
    assert pages == [expected(mixed_runs, lambda run: run.status == "failed")]


def test_the_rows_carry_what_the_list_shows(mixed_runs):
    page = selectors.list_runs({"status": ["failed", "cancelled"]}, page_size=3)
    with CaptureQueriesContext(connection) as captured:
        shown = [(run.procedure.name, run.version.number, run.status) for run in page.runs]
    assert captured.captured_queries == []  # procedure and version came with the page
    assert {status for _, _, status in shown} <= {"failed", "cancelled"}


@needs_postgres
def test_on_postgresql_each_status_is_read_from_its_own_index_range_and_merged(mixed_runs):
    """`status IN (…) ORDER BY created_at` can only walk the date index, skipping other
    statuses' runs; each status's range of (status, created_at, id) stops after a page."""
    with CaptureQueriesContext(connection) as captured:
        selectors.list_runs({"status": ["failed", "cancelled"]}, page_size=10)
    [merge] = [q["sql"] for q in captured.captured_queries if "UNION ALL" in q["sql"]]
    with transaction.atomic(), connection.cursor() as cursor:
        # A test-sized table is best read whole, or through a bitmap and a sort once the
        # suite's other tests have left statistics behind: forbid both to see the plan a big
        # table gets (make bench EXPLAINs it at a million runs).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + merge)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Merge Append" in plan
    assert plan.count("using run_status_created_idx") == 2
    assert "Sort  " not in plan
