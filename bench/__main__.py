"""`make bench` (`python -m bench`): seed the bench database once, then measure.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rapidfolio_bench \
    REDIS_URL=redis://127.0.0.1:6379/0 make bench [EXPLAIN=1]

`--only throughput,api` measures only the named parts (list, search, detail, api, throughput,
ledger) against the same seeded database; the others are left out of the report. `search` is
the Runs list's `?q=` (bench/search.py). `ledger` measures the API and the engine with the
ledger off and on side by side, the seal lag, and the verification of a 1,000-step run's
evidence bundle (bench/ledger_cost.py).

Environment: BENCH_RUNS (1,000,000), BENCH_RESEED=1 (seed again), BENCH_THROUGHPUT_RUNS
(2,000), BENCH_API_REQUESTS (2,000), BENCH_API_CLIENTS (50), BENCH_WORKER_THREADS (4),
BENCH_SAMPLES (40 timed requests per page measurement), DRAMATIQ_NAMESPACE (rapidfolio-bench).
"""

import argparse
import os
import sys
import time
from pathlib import Path

PARTS = ("list", "search", "detail", "api", "throughput", "ledger", "export")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print EXPLAIN (ANALYZE, BUFFERS) of every Runs list query",
    )
    parser.add_argument(
        "--output", default="bench-results/latest.json", help="where to write the JSON figures"
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to measure, of {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    only = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(only) - set(PARTS))
    if unknown or not only:
        parser.error(f"--only takes parts of {', '.join(PARTS)}; not {', '.join(unknown)}")

    from bench import env

    os.environ["BENCH_LOG_DIR"] = str(Path(args.output).parent / "logs")
    try:
        config = env.configure()
        return run(config, explain=args.explain, output=args.output, only=only)
    except env.SetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


def run(config: dict, *, explain: bool, output: str, only=PARTS) -> int:
    import django

    # Before the database checks: they take the run table's name from the model. Setting up
    # opens no connection, so the database can still be created or dropped afterwards.
    django.setup()
    from django.core.management import call_command

    from bench import database, report, seed

    url = config["database_url"]
    name, marker = _prepare_database(config)
    call_command("migrate", verbosity=0)
    results: dict = {"database": name, "runs": config["runs"], "machine": report.machine(url)}
    if marker is None:
        print(f"seeding {config['runs']:,} runs into {name}")
        database.write_marker(url, {"state": "seeding", "runs": config["runs"]})
        marker = seed.seed(url, runs=config["runs"])
        marker["state"] = "seeded"
        database.write_marker(url, marker)
        results["seed"] = {**marker, "reused": False}
    else:
        print(f"reusing {name}: {marker['runs']:,} runs seeded {marker['seeded_at']}")
        results["seed"] = {**marker, "reused": True}

    from bench import api_load, ledger_cost, pages, search, throughput

    started = time.perf_counter()
    if {"list", "search", "detail"} & set(only):
        # The pages are served here, through Django's test client: this process is set up as
        # rapidfolio/wsgi.py sets up every gunicorn worker before its first request.
        from rapidfolio.startup import freeze_loaded_objects

        freeze_loaded_objects()
    if "list" in only:
        results["list"] = report.with_load(pages.measure_list, config, explain=explain)
    if "search" in only:
        results["search"] = report.with_load(search.measure_search, config, explain=explain)
    if "detail" in only:
        results["detail"] = report.with_load(pages.measure_detail, config, marker["big_run"])
    if {"api", "throughput", "ledger"} & set(only):
        with api_load.server(config) as srv:
            if "api" in only:
                results["api"] = report.with_load(api_load.measure, config, srv)
            if "throughput" in only:
                results["throughput"] = report.with_load(throughput.measure, config, srv)
            if "ledger" in only:
                results["ledger"] = report.with_load(ledger_cost.measure, config, srv)
    if "export" in only:
        # Every run as CSV and JSON Lines through its own gunicorn (bench/export.py).
        from bench import export

        results["export"] = report.with_load(export.measure, config)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    report.print_report(results)
    report.write_json(results, output)
    return 0 if report.plans_ok(results) else 1


def _prepare_database(config: dict) -> tuple[str, dict | None]:
    """Create the bench database if missing, and afresh when its seed cannot be reused; returns
    its name and what was seeded there (None: nothing yet)."""
    from bench import database
    from bench.schema import RUN

    url = config["database_url"]
    name = database.database_name(url)
    if database.ensure_database(url):
        print(f"created database {name}")
    marker = database.read_marker(url, runs_table=RUN.table)
    if marker is not None and (
        config["reseed"] or marker.get("state") != "seeded" or marker.get("runs") != config["runs"]
    ):
        print(f"dropping and creating bench database {name} to seed {config['runs']:,} runs")
        database.recreate_database(url)
        marker = None
    return name, marker


if __name__ == "__main__":
    sys.exit(main())
