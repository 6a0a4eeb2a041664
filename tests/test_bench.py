"""`make bench` works: run once at a tiny size, in a subprocess, on its own database.

These prove the benchmark runs end to end (seed with COPY, list and run pages, the API under
gunicorn, two Dramatiq workers, the commit floor, the ledger off and on); the figures
themselves are in docs/benchmarks.md, not asserted here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from bench.ledger_cost import phase_order
from runs import ledger_queue
from tests.conftest import needs_postgres, needs_redis

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "BENCH_RUNS": "300",
    "BENCH_THROUGHPUT_RUNS": "20",
    "BENCH_API_REQUESTS": "30",
    "BENCH_API_CLIENTS": "5",
    "BENCH_SAMPLES": "3",
    "BENCH_WORKER_THREADS": "2",
    "BENCH_FLOOR_SECONDS": "1",
    # Not PostgreSQL's 10 s: the tiny benches' per-run figures are not asserted exactly.
    "BENCH_STATS_SETTLE_SECONDS": "2",
}


def _bench_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(extra)
    return env


def _server_url(dbname: str) -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{dbname}"


def _drop(database_url: str, dbname: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info["dbname"] = "postgres"
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


@pytest.fixture(scope="module")
def tiny_database():
    """The tiny benches' own database (the full one seeds it, the ledger part reuses it)."""
    dbname = f"rapidfolio_benchtest_{os.getpid()}"
    database_url = _server_url(dbname)
    try:
        yield database_url
    finally:
        _drop(database_url, dbname)


def _run_tiny_bench(database_url: str, output: Path, *args: str, **extra: str):
    env = _bench_env(
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        DRAMATIQ_NAMESPACE=f"rf-benchtest-{os.getpid()}",
        **TINY,
        **extra,
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    figures = json.loads(output.read_text()) if output.exists() else None
    return done, figures


@pytest.fixture(scope="module")
def tiny_bench(tiny_database, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "latest.json"
    # Every part but the ledger's, which tiny_ledger_bench runs: its verdicts compare timings
    # too small at this size to pass reliably, and they set the exit status.
    only = "list,search,detail,api,throughput"
    yield _run_tiny_bench(tiny_database, output, "--explain", "--only", only, BENCH_RESEED="1")


@needs_postgres
@needs_redis
def test_tiny_bench_exits_zero_and_prints_the_table(tiny_bench):
    done, _ = tiny_bench
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "engine throughput:" in done.stdout
    assert "commit floor:" in done.stdout


@needs_postgres
@needs_redis
def test_tiny_bench_seeds_runs_with_steps_and_events(tiny_bench):
    _, figures = tiny_bench
    rows = figures["seed"]["rows"]
    assert rows["runs_run"] == 300 + 1  # and the 1,000-step run for the run page
    assert rows["runs_step"] >= 3 * 300
    assert rows["runs_runevent"] >= 3 * 300


@needs_postgres
@needs_redis
def test_tiny_bench_serves_every_list_query_from_an_index(tiny_bench):
    _, figures = tiny_bench
    plans = figures["list"]["plans"]
    assert plans
    assert all(plan["ok"] for plan in plans.values()), {n: p["verdict"] for n, p in plans.items()}


@needs_postgres
@needs_redis
def test_tiny_bench_searches_seeded_references_from_an_index(tiny_bench):
    _, figures = tiny_bench
    search = figures["search"]
    found = search["rows_on_first_page"]
    # Each seeded run has an invoice of its own; a supplier's name is shared by many.
    assert found["invoice number, exact"] == 1 and found["whole run id"] == 1
    assert found["no match"] == 0
    plans = search["plans"]
    assert all(plan["ok"] for plan in plans.values()), {n: p["verdict"] for n, p in plans.items()}


@needs_postgres
@needs_redis
def test_tiny_bench_measures_the_integrity_check_on_an_intact_run_of_the_most_steps(tiny_bench):
    _, figures = tiny_bench
    detail = figures["detail"]
    assert detail["size"] == "1,000 steps, 200 events"
    assert detail["sizes"]["integrity check"] == "1,000 steps, 1,003 events, intact"
    assert detail["pages"]["integrity check"]["p95_ms"] > 0


@needs_postgres
@needs_redis
def test_tiny_bench_completes_every_throughput_run_and_counts_its_commits(tiny_bench):
    _, figures = tiny_bench
    throughput = figures["throughput"]
    assert throughput["statuses"] == {"completed": 20}
    assert throughput["steps_per_run"] == 6
    assert throughput["runs_per_second"] > 0
    assert throughput["write_commits_per_run"] >= 1
    assert throughput["commit_floor"]["commits_per_second"] > 0


@needs_postgres
@needs_redis
def test_tiny_bench_judges_the_engine_per_run_with_the_load_beside_it(tiny_bench):
    _, figures = tiny_bench
    throughput = figures["throughput"]
    cpu = throughput["cpu_ms_per_run"]
    assert {"gunicorn", "workers", "postgres backends", "postgres server", "redis"} <= set(cpu)
    assert throughput["cpu_ms_per_run_all"] == pytest.approx(sum(cpu.values()), abs=0.05)
    assert throughput["runs_per_cpu_second"] > 0
    # Every start-run POST and every step sends statements; counted in the processes themselves.
    assert throughput["statements_per_run"]["gunicorn"] >= 1
    assert throughput["statements_per_run"]["workers"] >= 6
    assert throughput["rows_written_per_run"]["runs_step"]["inserted"] >= 6
    wal = throughput["wal_per_run"]
    assert wal["server_lsn_bytes"] > 0
    assert (wal["database"] or {}).get("bytes", 0) > 0 or wal["database_not_read"]
    assert set(throughput["verdicts"]) == set(throughput["targets"])
    for part in ("list", "detail", "api", "throughput"):
        load = figures[part]["load"]
        assert len(load["start"]) == len(load["end"]) == 3 and load["cpus"] >= 1


@pytest.fixture(scope="module")
def tiny_ledger_bench(tiny_database, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench-ledger") / "latest.json"
    # One pair of phases: the bench's pairing and verdicts are the same for one pair or four.
    done, figures = _run_tiny_bench(
        tiny_database, output, "--only", "ledger", BENCH_LEDGER_PAIRS="1"
    )
    with psycopg.connect(tiny_database) as conn:
        installed = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = %s)",
            [ledger_queue.TRIGGER],
        ).fetchone()[0]
    yield done, figures, installed


@needs_postgres
@needs_redis
def test_tiny_ledger_bench_measures_the_ledger_off_and_on_and_leaves_it_on(tiny_ledger_bench):
    done, figures, installed = tiny_ledger_bench
    # 1 is a verdict missed (timings at this size are noise), never a crash.
    assert done.returncode in (0, 1) and figures, done.stdout[-3000:] + done.stderr[-3000:]
    ledger = figures["ledger"]
    assert (done.returncode == 0) == all(ledger["verdicts"].values()), ledger["verdicts"]
    assert installed and ledger["trigger_installed"]
    assert [phase["mode"] for phase in ledger["phases"]] == ["on", "off"]
    for phase in ledger["phases"]:
        assert phase["engine"]["statuses"] == {"completed": 20}
        assert phase["api"]["n"] == 30 and phase["api"]["p95_ms"] > 0
        assert ("sealer" in phase["engine"]["cpu_ms_per_run"]) == (phase["mode"] == "on")
    assert len(ledger["pairs"]) == 1
    for pair in ledger["pairs"]:
        assert pair["runs_per_second"]["ratio"] > 0 and pair["api_p95_ms"]["ratio"] > 0
    assert "ledger off vs on" in done.stdout and "median on/off" in done.stdout


@needs_postgres
@needs_redis
def test_tiny_ledger_bench_seals_every_event_and_verifies_the_long_runs_bundle(tiny_ledger_bench):
    done, figures, _ = tiny_ledger_bench
    assert figures, done.stdout[-3000:] + done.stderr[-3000:]
    ledger = figures["ledger"]
    lag = ledger["seal_lag"]["all"]
    assert lag["events"] == 20 * 9  # the ON phase's runs, 9 events each
    assert lag["unsealed"] == 0 and lag["p95_s"] > 0
    bundle = ledger["bundle"]
    assert "error" not in bundle, bundle
    assert bundle["size"] == "1,000 steps, 1,003 events"
    assert bundle["events_in_bundle"] == 1003 and bundle["bytes"] > 0
    assert bundle["verify"]["n"] == 20 and bundle["verify"]["p95_ms"] > 0
    assert bundle["export"]["p95_ms"] > 0
    assert "seal lag" in done.stdout and "evidence bundle: verify offline" in done.stdout


def test_bench_refuses_to_run_without_postgres_and_redis():
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=ROOT,
        env=_bench_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "set DATABASE_URL and REDIS_URL" in done.stderr


def test_ledger_phases_alternate_which_mode_goes_first():
    assert phase_order(1) == ("on", "off")
    assert phase_order(4) == ("on", "off", "off", "on", "on", "off", "off", "on")
