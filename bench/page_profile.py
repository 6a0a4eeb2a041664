"""Where a page's time goes: each page `make bench` measures (the Runs list's filter
combinations, the run tabs, the integrity check, GET /v1/runs/{id}), served in this process
against an already seeded bench database, with its CPU split into middleware, view, template
rendering, ORM query building and SQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rapidfolio_bench \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.page_profile \
        [--pages list,detail,api] [--match "all filters"] [--samples 40] \
        [--profiler cprofile|pyinstrument]

The split comes from timers around Django's own seams, outermost call only (an include inside
a render is not counted twice): the handler (middleware and view), the view callable, the
template backend's render, SQLCompiler.as_sql (building SQL from a queryset) and the database
cursor's execute (SQL sent and answered, with psycopg's conversion of the rows). SQL run while
a template renders counts in both. "Client" is what Django's test client adds around the
handler (building the request, reading the response): a real server has its own instead.

It does not migrate or seed: run `python -m bench --only list,detail` once first. CPU is
`time.process_time` of this process, which the machine's other load moves much less than wall
time; the load average is printed beside the figures.
"""

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager

from bench import env

SEAMS = ("handler", "view", "template", "orm_compile", "sql")


class _Seams:
    """Outermost-call timers (wall ms) around Django's seams, summed per request."""

    def __init__(self):
        self.totals = dict.fromkeys(SEAMS, 0.0)
        self.depth = dict.fromkeys(SEAMS, 0)

    def reset(self):
        self.totals = dict.fromkeys(SEAMS, 0.0)

    @contextmanager
    def timing(self, seam: str):
        self.depth[seam] += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self.depth[seam] -= 1
            if self.depth[seam] == 0:
                self.totals[seam] += (time.perf_counter() - started) * 1000

    def wrap(self, owner, name: str, seam: str, stack: ExitStack):
        original = getattr(owner, name)
        seams = self

        def timed(*args, **kwargs):
            with seams.timing(seam):
                return original(*args, **kwargs)

        setattr(owner, name, timed)
        stack.callback(setattr, owner, name, original)

    def install(self, stack: ExitStack):
        from django.core.handlers.base import BaseHandler
        from django.db import connection
        from django.db.models.sql.compiler import SQLCompiler
        from django.template.backends.django import Template

        self.wrap(BaseHandler, "get_response", "handler", stack)
        self.wrap(Template, "render", "template", stack)
        self.wrap(SQLCompiler, "as_sql", "orm_compile", stack)
        original_atomic = BaseHandler.make_view_atomic
        seams = self

        def make_view_atomic(handler, view):
            wrapped = original_atomic(handler, view)

            def timed_view(*args, **kwargs):
                with seams.timing("view"):
                    return wrapped(*args, **kwargs)

            return timed_view

        BaseHandler.make_view_atomic = make_view_atomic
        stack.callback(setattr, BaseHandler, "make_view_atomic", original_atomic)

        def execute(execute_, sql, params, many, context):
            with seams.timing("sql"):
                return execute_(sql, params, many, context)

        stack.enter_context(connection.execute_wrapper(execute))


def _pages(which: set[str]) -> dict:
    """name -> (client, url, headers), the pages bench.pages measures, the same way."""
    from django.test import Client
    from django.urls import reverse

    from bench import database, pages, scenario
    from bench.schema import RUN
    from runs.api_keys import create_api_key
    from runs.models import Run

    marker = database.read_marker(os.environ["DATABASE_URL"], runs_table=RUN.table)
    if not marker or marker.get("state") != "seeded":
        raise SystemExit("bench.page_profile: seed first with python -m bench --only list,detail")
    client = pages._client()
    found = {}
    if "list" in which:
        for name, params in pages.list_cases().items():
            url = reverse("runs:list") + "?" + pages._query_string(params)
            found[f"list: {name}"] = (client, url, {})
    big = Run.objects.get(public_id=marker["big_run"])
    if "detail" in which:
        for tab in pages.DETAIL_TABS:
            url = (
                reverse("runs:detail", args=[big.public_id])
                if tab == "overview"
                else reverse("runs:tab", args=[big.public_id, tab])
            )
            found[f"tab: {tab}"] = (client, url, {})
        found["tab: step-log (last page)"] = (client, found["tab: step-log"][1] + "?start=1000", {})
        found["tab: events (last page)"] = (client, found["tab: events"][1] + "?start=200", {})
        intact = Run.objects.get(public_id=scenario.ensure_long_run())
        found["integrity check"] = (
            client,
            reverse("runs:integrity", args=[intact.public_id]),
            {"HTTP_HX_REQUEST": "true"},
        )
    if "api" in which:
        _, raw_key = create_api_key(name="bench page profile", environment=big.environment)
        api_client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        found["API GET /v1/runs/{id}"] = (
            api_client,
            reverse("api:get_run", args=[big.public_id]),
            {},
        )
    return found


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-int(share * 100) * len(ordered) // 100) - 1)]


def measure(name, client, url, headers, *, samples: int, seams: _Seams) -> dict:
    def call():
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code)

    for _ in range(3):
        call()
    wall, cpu, split = [], [], {seam: [] for seam in SEAMS}
    for _ in range(samples):
        seams.reset()
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        call()
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started_wall) * 1000)
        for seam in SEAMS:
            split[seam].append(seams.totals[seam])
    means = {seam: statistics.fmean(values) for seam, values in split.items()}
    return {
        "page": name,
        "wall_p50": statistics.median(wall),
        "wall_p95": _percentile(wall, 0.95),
        "cpu_p50": statistics.median(cpu),
        "cpu_p95": _percentile(cpu, 0.95),
        "client": statistics.fmean(wall) - means["handler"],
        "middleware": means["handler"] - means["view"],
        "view_other": means["view"] - means["template"],
        **means,
    }


def _print(rows: list[dict]) -> None:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nload average {load}; ms per request (wall unless CPU)")
    header = (
        f"{'page':34} {'p50':>6} {'p95':>6} {'CPU50':>6} {'CPU95':>6} │ {'client':>6} "
        f"{'middlw':>6} {'view':>6} {'tmpl':>6} {'orm':>6} {'sql':>6}"
    )
    print(header)
    print("─" * len(header))
    for row in rows:
        print(
            f"{row['page'][:34]:34} {row['wall_p50']:6.1f} {row['wall_p95']:6.1f} "
            f"{row['cpu_p50']:6.1f} {row['cpu_p95']:6.1f} │ {row['client']:6.1f} "
            f"{row['middleware']:6.1f} {row['view_other']:6.1f} {row['template']:6.1f} "
            f"{row['orm_compile']:6.1f} {row['sql']:6.1f}"
        )
    print(
        "view = the view's own work outside template rendering (ORM building included); "
        "orm = SQLCompiler.as_sql; sql = cursor.execute (also inside templates)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.page_profile", description=__doc__)
    parser.add_argument("--pages", default="list,detail,api")
    parser.add_argument("--match", default="", help="only pages whose name contains this")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--profiler", choices=("none", "cprofile", "pyinstrument"), default="none")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args(argv)
    try:
        env.configure()
    except env.SetupError as exc:
        print(f"bench.page_profile: {exc}", file=sys.stderr)
        return 2
    import django

    django.setup()
    from bench.profile import _Profiler
    from rapidfolio.startup import freeze_loaded_objects

    freeze_loaded_objects()  # as rapidfolio/wsgi.py does in each gunicorn worker
    pages = {
        name: page
        for name, page in _pages({p.strip() for p in args.pages.split(",")}).items()
        if args.match.lower() in name.lower()
    }
    rows = []
    for name, (client, url, headers) in pages.items():
        seams = _Seams()
        if args.profiler != "none":
            print(f"\n=== {name}: {url}")
        with ExitStack() as stack:
            if args.profiler == "none":
                seams.install(stack)
            with _Profiler(args.profiler, args.top):
                rows.append(measure(name, client, url, headers, samples=args.samples, seams=seams))
    _print(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
