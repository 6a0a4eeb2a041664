"""Server time of the Runs list and the run page, through the real views and Django's test
client (logged in as an operator), in this process against the bench database.

The Runs list is measured for the filter combinations people use, and two deep pages: 20
"Next" cursors followed from the top, and a cursor from the middle of the year. With
--explain, each list query is also run under EXPLAIN (ANALYZE, BUFFERS), and checked to be
served by an index: a Seq Scan on the runs table fails the check.
"""

import datetime
import re
import time
from urllib.parse import urlencode

from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from bench import scenario
from bench.report import summary
from bench.schema import RUN
from procedures.models import Procedure
from rapidfolio.roles import LIVE_ENVIRONMENT
from rapidfolio.test_client import Client
from runs import selectors
from runs.models import Run

LIST_TARGET_MS = 50
DETAIL_TARGET_MS = 100
WARMUP = 3
FOLLOWED_CURSORS = 20
SMALL_TABLE_RUNS = 100_000
DETAIL_TABS = ("overview", "inputs", "step-log", "output", "events")


def _operator() -> User:
    """The bench's operator, who sees both environments' runs (the lists measure both); a
    database seeded before live access was its own group gets it here."""
    operator = User.objects.get(username=scenario.OPERATOR)
    operator.groups.add(Group.objects.get(name=LIVE_ENVIRONMENT))
    return User.objects.get(pk=operator.pk)  # a fresh permission cache


def _client() -> Client:
    # Not "testserver": the bench does not install the test environment (it would instrument
    # template rendering and slow every page down).
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(_operator())
    return client


def _has_route(name: str, *args) -> bool:
    try:
        reverse(name, args=args)
    except NoReverseMatch:
        return False
    try:
        from runs import views  # noqa: F401
    except ImportError:
        return False
    return True


def _time(call, samples: int) -> list[float]:
    for _ in range(WARMUP):
        call()
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def list_cases() -> dict[str, dict]:
    """Filter params (as the list page's query string has them) for each measured case."""
    procedures = {p.name: p.public_id for p in Procedure.objects.all()}
    today = timezone.localdate()
    half_year = today - datetime.timedelta(days=182)
    return {
        "no filter": {},
        "status": {"status": ["failed"]},
        "two statuses": {"status": ["failed", "cancelled"]},
        "status + procedure": {"status": ["failed"], "procedure": procedures["Pay invoice"]},
        "environment + date range": {
            "environment": "live",
            "created_from": (half_year - datetime.timedelta(days=30)).isoformat(),
            "created_to": half_year.isoformat(),
        },
        "all filters": {
            "status": ["completed"],
            "procedure": procedures["Credit line check"],
            "environment": "sandbox",
            "type": "trigger",
            "created_from": (half_year - datetime.timedelta(days=90)).isoformat(),
            "created_to": half_year.isoformat(),
        },
        "deep page: 20 cursors followed": {"cursor": _followed_cursor(FOLLOWED_CURSORS)},
        "deep page: cursor mid-year": {"cursor": _mid_year_cursor()},
    }


def _followed_cursor(pages: int) -> str:
    cursor, viewer = None, _operator()
    for _ in range(pages):
        cursor = selectors.list_runs({}, viewer=viewer, cursor=cursor).next_cursor
        if cursor is None:
            break
    return cursor or ""


def _mid_year_cursor() -> str:
    oldest = Run.objects.order_by("created_at", "id").only("created_at").first()
    if oldest is None:
        return ""
    middle = oldest.created_at + (timezone.now() - oldest.created_at) / 2
    run = (
        Run.objects.filter(created_at__lte=middle)
        .order_by("-created_at", "-id")
        .only("created_at")
        .first()
    )
    return selectors.encode_cursor(run) if run else ""


def _query_string(params: dict) -> str:
    return urlencode(params, doseq=True)


def measure_list(config: dict, *, explain: bool) -> dict:
    via_view = _has_route("runs:list")
    client = _client() if via_view else None
    viewer = _operator()
    samples = config["samples"]
    small = Run.objects.count() < SMALL_TABLE_RUNS
    figures, plans, queries = {}, {}, {}
    for name, params in list_cases().items():
        filters = {k: v for k, v in params.items() if k != "cursor"}
        cursor = params.get("cursor") or None
        if via_view:
            url = reverse("runs:list") + "?" + _query_string(params)

            def call(url=url):
                response = client.get(url)
                assert response.status_code == 200, (url, response.status_code)
        else:

            def call(filters=filters, cursor=cursor):
                page = selectors.list_runs(filters, viewer=viewer, cursor=cursor)
                assert not page.filter.form.errors, page.filter.form.errors

        figures[name] = summary(_time(call, samples))
        with CaptureQueriesContext(connection) as captured:
            call()
        queries[name] = len(captured.captured_queries)
        if explain:
            plans[name] = explain_list_query(filters, cursor, small=small)
    result = {
        "via": "view /runs/" if via_view else "selector list_runs",
        "target_ms": LIST_TARGET_MS,
        "queries": figures,
        "queries_per_request": queries,
    }
    if explain:
        result["plans"] = plans
    return result


def list_query_sql(filters: dict, cursor: str | None) -> list[str]:
    """The SQL statements on the runs table list_runs sends for these filters, as executed
    (parameters inlined): one, or for several statuses the merge of each status's newest runs
    and the read of that page's rows."""
    with CaptureQueriesContext(connection) as captured:
        selectors.list_runs(filters, viewer=_operator(), cursor=cursor)
    statements = [
        query["sql"]
        for query in captured.captured_queries
        if f"FROM {connection.ops.quote_name(RUN.table)}" in query["sql"]
        and "ORDER BY" in query["sql"]
    ]
    if not statements:
        raise RuntimeError(f"list_runs sent no query on {RUN.table} for {filters}")
    return statements


def explain_list_query(filters: dict, cursor: str | None, *, small: bool = False) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) of the list query, checked for an index on the runs table.

    On a small table (a test-sized seed) the planner rightly prefers reading a few pages in
    sequence; there, sequential scans are switched off for the EXPLAIN, which still falls
    back to a Seq Scan when no index can serve the query, so the check keeps its meaning.
    """
    statements = list_query_sql(filters, cursor)
    table = re.escape(RUN.table)
    plans, used = [], []
    seq_scan = unindexed = False
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) — {filters or 'no filter'}{' + cursor' if cursor else ''}")
    for sql in statements:
        with transaction.atomic(), connection.cursor() as cursor_:
            if small:
                cursor_.execute("SET LOCAL enable_seqscan = off")
            cursor_.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n".join(row[0] for row in cursor_.fetchall())
        print(sql)
        print(plan)
        plans.append(plan)
        scans = re.findall(rf"Index (?:Only )?Scan(?: Backward)? using (\w+) on {table}", plan)
        scans += re.findall(r"Bitmap Index Scan on (\w+)", plan)
        seq_scan = seq_scan or re.search(rf"Seq Scan on {table}\b", plan) is not None
        unindexed = unindexed or not scans  # every statement must read the runs by an index
        used += [name for name in dict.fromkeys(scans) if name not in used]
    ok = not seq_scan and not unindexed
    verdict = (
        f"index {', '.join(used)}" if ok else f"Seq Scan on {RUN.table}" if seq_scan else "no index"
    )
    if small:
        verdict += " (small table: enable_seqscan off)"
    print(f"{'PASS' if ok else 'FAIL'}: {verdict}")
    return {
        "ok": ok,
        "verdict": verdict,
        "sql": "\n".join(statements),
        "plan": "\n\n".join(plans),
    }


def measure_detail(config: dict, big_run_public_id: str) -> dict:
    run = Run.objects.get(public_id=big_run_public_id)
    size = f"{run.steps.count():,} steps, {run.events.count():,} events"
    samples = max(config["samples"] // 2, 10)
    via_view = _has_route("runs:detail", run.public_id)
    figures, queries = {}, {}
    if via_view:
        client = _client()
        pages = {
            tab: (
                reverse("runs:detail", args=[run.public_id])
                if tab == "overview"
                else reverse("runs:tab", args=[run.public_id, tab])
            )
            for tab in DETAIL_TABS
        }
        # The log tabs are paged: measure the last page too (the view reads past the end as
        # the last page), and the integrity badge, which the header loads in its own request.
        pages["step-log (last page)"] = pages["step-log"] + "?start=1000"
        pages["events (last page)"] = pages["events"] + "?start=200"
        sizes = {}
        if _has_route("runs:integrity", run.public_id):
            # On the intact long run: a check of the seeded big run stops at its first event.
            intact = Run.objects.get(public_id=scenario.ensure_long_run())
            pages["integrity check"] = reverse("runs:integrity", args=[intact.public_id])
            sizes["integrity check"] = (
                f"{intact.steps.count():,} steps, {intact.events.count():,} events, intact"
            )
        for tab, url in pages.items():

            def call(url=url):
                # The integrity badge is what the header's HTMX request fetches.
                headers = {"HTTP_HX_REQUEST": "true"} if url.endswith("/integrity/") else {}
                response = client.get(url, **headers)
                assert response.status_code == 200, (url, response.status_code)

            figures[tab] = summary(_time(call, samples))
            with CaptureQueriesContext(connection) as captured:
                call()
            queries[tab] = len(captured.captured_queries)
    else:
        viewer = _operator()

        def call():
            found = selectors.run_detail(run.public_id, viewer=viewer)
            list(selectors.run_steps(found))
            list(selectors.run_events(found))

        figures["run, steps and events"] = summary(_time(call, samples))
    api_run = _measure_api_read(run, samples)
    if api_run:
        figures["API GET /v1/runs/{id}"] = api_run
    return {
        "via": "view /runs/<id>/" if via_view else "selectors",
        "target_ms": DETAIL_TARGET_MS,
        "size": size,
        "run": run.public_id,
        "pages": figures,
        "sizes": sizes if via_view else {},
        "queries_per_request": queries,
    }


def _measure_api_read(run: Run, samples: int) -> dict | None:
    try:
        url = reverse("api:get_run", args=[run.public_id])
    except NoReverseMatch:
        return None
    from runs.api_keys import create_api_key

    _, raw_key = create_api_key(name="bench reader", environment=run.environment)
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    def call():
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    return summary(_time(call, samples))
