"""`make bench`'s export part works end to end: at a tiny size, in a subprocess, on its own
database, every run streams through gunicorn as CSV and JSON Lines (bench/export.py)."""

import os

import pytest

from tests.conftest import needs_postgres, needs_redis
from tests.test_bench import _drop, _run_tiny_bench, _server_url


@pytest.fixture(scope="module")
def tiny_export_bench(tmp_path_factory):
    dbname = f"rapidfolio_benchexport_{os.getpid()}"
    database_url = _server_url(dbname)
    output = tmp_path_factory.mktemp("bench-export") / "latest.json"
    try:
        yield _run_tiny_bench(database_url, output, "--only", "export", BENCH_RESEED="1")
    finally:
        _drop(database_url, dbname)


@needs_postgres
@needs_redis
def test_the_export_part_streams_every_run_in_both_formats_and_passes(tiny_export_bench):
    done, figures = tiny_export_bench
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    export = figures["export"]
    assert export["ok"] and set(export["formats"]) == {"csv", "jsonl"}
    for figure in export["formats"].values():
        assert figure["status"] == 200
        # The seeded runs, the 1,000-step run and the template runs the seed cloned them from.
        assert figure["rows"] == figure["expected_rows"] > 300
        assert 0 < figure["rss_before_mb"] <= figure["rss_peak_mb"] < export["peak_rss_limit_mb"]
    assert "export of every run through gunicorn (gthread, 1 worker)" in done.stdout
    rows = export["formats"]["csv"]["rows"]
    assert f"PASS  /runs/export.csv: {rows:,} of {rows:,} rows" in done.stdout
