"""The Runs list read (runs.selectors.list_runs): newest first, keyset pages, filters combined.

Several statuses are read as each status's newest runs merged (see _newest_of_each_status);
these tests pin that the merge gives exactly the rows and order of the plain filter, page after
page, including runs that share a creation time.
"""

import base64
import datetime
import json

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs import selectors
from runs.api_keys import create_api_key
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


def list_runs(params, **options):
    """The Runs list read by someone who sees both environments (the runs here are in both)."""
    viewer, _ = User.objects.get_or_create(username="auditor", defaults={"is_superuser": True})
    return selectors.list_runs(params, viewer=viewer, **options)


def expected(runs, keep) -> list[str]:
    chosen = [run for run in runs if keep(run)]
    chosen.sort(key=lambda run: (run.created_at, run.pk), reverse=True)
    return [run.public_id for run in chosen]


def all_pages(params, page_size) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = list_runs(params, cursor=cursor, page_size=page_size)
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
    page = list_runs({"status": ["failed", "cancelled"]}, page_size=3)
    with CaptureQueriesContext(connection) as captured:
        shown = [(run.procedure.name, run.version.number, run.status) for run in page.runs]
    assert captured.captured_queries == []  # procedure and version came with the page
    assert {status for _, _, status in shown} <= {"failed", "cancelled"}


@needs_postgres
def test_on_postgresql_each_status_is_read_from_its_own_index_range_and_merged(mixed_runs):
    """`status IN (…) ORDER BY created_at` can only walk the date index, skipping other
    statuses' runs; each status's range of (status, created_at, id) stops after a page."""
    with CaptureQueriesContext(connection) as captured:
        list_runs({"status": ["failed", "cancelled"]}, page_size=10)
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


@needs_postgres
def test_on_postgresql_a_page_after_a_cursor_still_reads_each_status_from_its_index(mixed_runs):
    """The cursor gives the last run's public id; its id comes from a subquery on the unique
    public id, so the statuses' index ranges still start at the cursor."""
    cursor = list_runs({"status": ["failed", "cancelled"]}, page_size=3).next_cursor
    with CaptureQueriesContext(connection) as captured:
        list_runs({"status": ["failed", "cancelled"]}, cursor=cursor, page_size=3)
    [merge] = [q["sql"] for q in captured.captured_queries if "UNION ALL" in q["sql"]]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + merge)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Merge Append" in plan
    assert plan.count("using run_status_created_idx") == 2
    assert "Sort  " not in plan


# --- the page cursor: signed, and naming no internal id (runs.cursors) ------------------------
def _payload(cursor: str):
    encoded = cursor.rsplit(":", 1)[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def _signed_part(cursor: str) -> str:
    return cursor.rsplit(":", 1)[1]


def _encoded(value) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_cursor_continues_right_after_the_last_run_of_its_page(mixed_runs):
    first = list_runs({}, page_size=5)
    second = list_runs({}, cursor=first.next_cursor, page_size=5)
    newest = expected(mixed_runs, lambda run: True)
    assert [run.public_id for run in first.runs + second.runs] == newest[:10]


def test_a_cursor_names_its_run_by_creation_time_and_public_id_never_by_internal_id(mixed_runs):
    page = list_runs({}, page_size=5)
    last = page.runs[-1]
    assert _payload(page.next_cursor) == [last.created_at.isoformat(), last.public_id]


def test_a_cursor_written_differently_for_the_same_filters_still_pages(mixed_runs):
    cursor = list_runs({"status": ["failed", "cancelled"]}, page_size=2).next_cursor
    page = list_runs({"status": ["cancelled", "failed"]}, cursor=cursor, page_size=2)
    wanted = expected(mixed_runs, lambda run: run.status in ("failed", "cancelled"))
    assert [run.public_id for run in page.runs] == wanted[2:4]


TAMPERINGS = {
    "signature changed": lambda c, run: c[:-1] + ("A" if c[-1] != "A" else "B"),
    "other run, same signature": lambda c, run: (
        f"{_encoded([run.created_at.isoformat(), run.public_id])}:{_signed_part(c)}"
    ),
    "internal id, same signature": lambda c, run: (
        f"{_encoded([run.created_at.isoformat(), run.pk])}:{_signed_part(c)}"
    ),
    "no signature": lambda c, run: c.rsplit(":", 1)[0],
    "the old unsigned cursor": lambda c, run: base64.urlsafe_b64encode(
        f"{run.created_at.isoformat()}|{run.pk}".encode()
    ).decode(),
    "not a cursor": lambda c, run: "not-a-cursor!!",
}


@pytest.mark.parametrize("tampering", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_tampered_cursor_is_refused(mixed_runs, tampering):
    cursor = list_runs({}, page_size=5).next_cursor
    with pytest.raises(selectors.InvalidCursor):
        list_runs({}, cursor=tampering(cursor, mixed_runs[3]), page_size=5)


def test_a_cursor_for_other_filters_is_refused(mixed_runs):
    cursor = list_runs({"environment": "sandbox"}, page_size=5).next_cursor
    with pytest.raises(selectors.InvalidCursor):
        list_runs({"environment": "live"}, cursor=cursor, page_size=5)
    with pytest.raises(selectors.InvalidCursor):
        list_runs({}, cursor=cursor, page_size=5)


def test_a_cursor_signed_by_another_installation_is_refused(mixed_runs):
    with override_settings(SECRET_KEY="another installation's key " * 3):
        cursor = list_runs({}, page_size=5).next_cursor
    with pytest.raises(selectors.InvalidCursor):
        list_runs({}, cursor=cursor, page_size=5)


def test_a_cursor_signed_before_the_secret_key_rotated_still_pages(mixed_runs, settings):
    old_key = settings.SECRET_KEY
    cursor = list_runs({}, page_size=5).next_cursor
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the new key " * 5, [old_key]
    page = list_runs({}, cursor=cursor, page_size=5)
    assert [run.public_id for run in page.runs] == expected(mixed_runs, lambda run: True)[5:10]


def _dashboard(client, headers=None, **params):
    client.force_login(User.objects.get_or_create(username="auditor", is_superuser=True)[0])
    return client.get(reverse("runs:list"), params, **(headers or {}))


def test_the_dashboard_answers_a_tampered_cursor_with_a_message_and_no_runs(client, mixed_runs):
    cursor = list_runs({}, page_size=5).next_cursor
    for tampered in (TAMPERINGS["other run, same signature"](cursor, mixed_runs[0]), "x" * 400):
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            response = _dashboard(client, headers, cursor=tampered)
            page = response.content.decode()
            assert response.status_code == 200
            assert "The page cursor is not valid" in page and "Go to the newest runs" in page
            assert not any(run.public_id in page for run in mixed_runs)


def _api_client(client, environment="sandbox"):
    _, raw_key = create_api_key(name="Reporting", environment=environment)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw_key}"
    return client


def test_an_api_cursor_does_not_page_the_dashboard_nor_a_dashboard_cursor_the_api(
    client, mixed_runs
):
    api = _api_client(client)
    api_cursor = api.get("/v1/runs", {"limit": 2}).json()["next_cursor"]
    assert _payload(api_cursor)[1].startswith("run_")
    dashboard_cursor = list_runs({"environment": "sandbox"}, page_size=2).next_cursor
    refused = api.get("/v1/runs", {"limit": 2, "cursor": dashboard_cursor})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_cursor"
    del client.defaults["HTTP_AUTHORIZATION"]
    page = _dashboard(client, environment="sandbox", cursor=api_cursor).content.decode()
    assert "The page cursor is not valid" in page
    assert not any(run.public_id in page for run in mixed_runs)


def test_the_api_pages_through_its_own_cursors(client, mixed_runs):
    api, seen, cursor = _api_client(client), [], None
    while True:
        answer = api.get("/v1/runs", {"limit": 4, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200
        seen += [run["id"] for run in answer.json()["runs"]]
        if not (cursor := answer.json()["next_cursor"]):
            break
    assert seen == expected(mixed_runs, lambda run: run.environment == "sandbox")
