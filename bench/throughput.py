"""Engine throughput beside the PostgreSQL commit floor.

Runs of the throughput procedure (six steps: validate, credit.check, a condition,
stripe.create_payment_intent, notify.email, output) are started through the API on gunicorn and
executed by two `manage.py rundramatiq --processes 1 --threads N` workers. The figure is runs
per second from the first POST to the last completion.

Commits per run are counted two ways:
- transactions: the bench database's xact_commit (pg_stat_database) over the phase, minus the
  benchmark's own polling queries, per run. Every autocommit SELECT counts here.
- writing transactions: every transaction that wrote stamps its xid as xmin on the rows it
  inserted or last updated, so the distinct xmins across the runs' rows (run, steps, events)
  count the commits that had to reach the WAL: the ones the commit floor limits.
The commit floor is pgbench (single-row INSERT + COMMIT from 4 connections) on the same server;
divided by writing transactions per run it is the most runs/s this database could commit.
"""

import os
import shutil
import subprocess
import threading
import time

from bench import database, procs, scenario
from bench.api_load import LOG_DIR, Client, Server, warm_up
from bench.schema import EVENT, RUN, STEP

TARGET_RUNS_PER_SECOND = 150
TARGET_COMMITS_PER_RUN = 8
TIME_LIMIT_SECONDS = 600
POSTING_CLIENTS = 8
WARM_UP_RUNS = 100
FLOOR_SECONDS = float(os.environ.get("BENCH_FLOOR_SECONDS", "5"))
FLOOR_CLIENTS = 4
TERMINAL = ("completed", "failed", "cancelled")


def commit_floor(database_url: str) -> dict:
    """Single-row INSERT + COMMIT per second on this server: pgbench, else psycopg threads."""
    with database.connect(database_url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_commit_floor")
        conn.execute("CREATE TABLE bench_commit_floor (id bigserial PRIMARY KEY, at timestamptz)")
    try:
        if shutil.which("pgbench"):
            return _pgbench(database_url)
        return _psycopg_floor(database_url)
    finally:
        with database.connect(database_url) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_commit_floor")


def _pgbench(database_url: str) -> dict:
    params = database.conninfo(database_url)
    script = LOG_DIR / "commit_floor.sql"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("INSERT INTO bench_commit_floor (at) VALUES (now());\n")
    args = ["pgbench", "-n", "-f", str(script), "-c", str(FLOOR_CLIENTS), "-j", "2"]
    args += ["-T", str(max(1, round(FLOOR_SECONDS)))]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            args += [flag, str(params[key])]
    args.append(params["dbname"])
    env = {**os.environ}
    if params.get("password"):
        env["PGPASSWORD"] = params["password"]
    output = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    tps = next(
        float(line.split("=")[1].split()[0])
        for line in output.splitlines()
        if line.startswith("tps")
    )
    return {
        "commits_per_second": round(tps),
        "method": f"pgbench, 1-row INSERT + COMMIT, {FLOOR_CLIENTS} connections",
    }


def _psycopg_floor(database_url: str) -> dict:
    counts = [0] * FLOOR_CLIENTS
    stop_at = time.perf_counter() + FLOOR_SECONDS

    def work(slot: int):
        with database.connect(database_url) as conn:
            while time.perf_counter() < stop_at:
                conn.execute("INSERT INTO bench_commit_floor (at) VALUES (now())")
                counts[slot] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(FLOOR_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "commits_per_second": round(sum(counts) / FLOOR_SECONDS),
        "method": f"psycopg, 1-row INSERT + COMMIT, {FLOOR_CLIENTS} connections",
    }


def _xact_commit(database_url: str, name: str) -> int:
    # Read from the maintenance database so reading it is not counted in the bench database.
    with database.connect(database_url, dbname="postgres") as conn:
        return conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()[0]


def _start_workers(threads: int) -> list:
    workers = []
    for number in (1, 2):
        workers.append(
            procs.start(
                [
                    procs.python(),
                    "manage.py",
                    "rundramatiq",
                    "--processes",
                    "1",
                    "--threads",
                    str(threads),
                    "--skip-logging",
                    "--worker-shutdown-timeout",
                    "5000",
                ],
                log_path=LOG_DIR / f"worker-{number}.log",
            )
        )
    return workers


def _unfinished(conn, version_id: int) -> int:
    return conn.execute(
        f"SELECT count(*) FROM {RUN.table} WHERE {RUN.version} = %s "
        f"AND {RUN.status} IN ('pending', 'running')",
        [version_id],
    ).fetchone()[0]


def _wait_drained(database_url: str, version_id: int, workers, timeout: float = 300) -> None:
    """Let the workers finish earlier runs of the procedure (the API phase's), warming them up."""
    deadline = time.monotonic() + timeout
    with database.connect(database_url) as conn:
        while _unfinished(conn, version_id):
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"a worker exited; see {LOG_DIR}")
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not drain the earlier runs in time")
            time.sleep(0.5)


def measure(config: dict, srv: Server) -> dict:
    url = config["database_url"]
    name = database.database_name(url)
    count = config["throughput_runs"]
    floor = commit_floor(url)
    version = scenario.ensure_throughput_version()
    workers = _start_workers(config["worker_threads"])
    worker_label = f"2 × rundramatiq --processes 1 --threads {config['worker_threads']}"
    try:
        _wait_drained(url, version.pk, workers)
        _warm_up(srv, url, version.pk, workers)
        with database.connect(url) as conn:
            first_id = conn.execute(
                f"SELECT coalesce(max({RUN.id}), 0) FROM {RUN.table}"
            ).fetchone()[0]
        time.sleep(2)  # idle backends publish their statistics within a second
        commits_before = _xact_commit(url, name)
        meter = _cpu_meter(srv, workers, name)
        meter.start()
        outcome = _post_and_wait(srv, url, version.pk, first_id, count, workers)
        cpu = meter.stop()
    finally:
        for worker in workers:
            procs.stop(worker)
    time.sleep(2)
    own_queries = outcome["polls"]
    transactions = _xact_commit(url, name) - commits_before - own_queries
    with database.connect(url) as conn:
        figures = _run_figures(conn, version.pk, first_id, outcome["first_post_epoch"])
    runs = figures["runs"]
    write_commits = figures["write_transactions"] / runs if runs else 0.0
    limit = floor["commits_per_second"] / write_commits if write_commits else 0.0
    rate = runs / figures["seconds"] if figures["seconds"] else 0.0
    return {
        "runs": runs,
        "statuses": figures["statuses"],
        "steps_per_run": figures["steps_per_run"],
        "events_per_run": figures["events_per_run"],
        "workers": worker_label,
        "seconds": round(figures["seconds"], 2),
        "runs_per_second": round(rate, 1),
        "target_runs_per_second": TARGET_RUNS_PER_SECOND,
        "post_latency": outcome["post_latency"],
        "transactions_per_run": round(transactions / runs, 2) if runs else 0.0,
        "write_commits_per_run": round(write_commits, 2),
        "target_commits_per_run": TARGET_COMMITS_PER_RUN,
        "commit_floor": floor,
        "commit_limit_runs_per_second": round(limit),
        "share_of_limit": round(rate / limit, 3) if limit else 0.0,
        "cpu": cpu,
        "cpu_ms_per_run": {
            group: round(seconds * 1000 / runs, 2) for group, seconds in cpu["cpu_seconds"].items()
        }
        if runs
        else {},
    }


def _cpu_meter(srv: Server, workers, name: str) -> procs.CpuMeter:
    """CPU time of each process group taking part: the API, the workers, PostgreSQL, us."""
    return procs.CpuMeter(
        {
            "gunicorn": srv.pids,
            "workers": lambda: [p for w in workers for p in procs.descendants(w.pid)],
            "postgres backends": lambda: procs.postgres_backends(name),
            "bench clients": lambda: [os.getpid()],
        }
    )


def _warm_up(srv, url, version_id: int, workers) -> None:
    """A few runs through the API and the workers before the clock starts, so the figure is
    the workers' steady state, not their start-up (Django, the integrations' SDKs, first
    connections), whether or not the API phase ran before."""
    warm_up(srv, clients=POSTING_CLIENTS, requests=WARM_UP_RUNS, first_index=1_000_000)
    _wait_drained(url, version_id, workers)


def _post_and_wait(srv, url, version_id, first_id, count, workers) -> dict:
    from bench.report import summary

    latencies = []
    lock = threading.Lock()
    tickets = iter(range(count))
    first_post = []

    def post():
        client = Client(srv)
        while True:
            with lock:
                number = next(tickets, None)
                if number is not None and not first_post:
                    first_post.append(time.time())
            if number is None:
                return
            elapsed, status = client.start_run(number)
            if status != 202:
                raise RuntimeError(f"the API answered {status}")
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=post, daemon=True) for _ in range(POSTING_CLIENTS)]
    for thread in threads:
        thread.start()
    polls = 0
    deadline = time.monotonic() + TIME_LIMIT_SECONDS
    with database.connect(url) as conn:
        while True:
            time.sleep(0.1)
            polls += 1
            done = conn.execute(
                f"SELECT count(*) FROM {RUN.table} WHERE {RUN.id} > %s AND {RUN.version} = %s "
                f"AND {RUN.status} IN ('completed', 'failed', 'cancelled')",
                [first_id, version_id],
            ).fetchone()[0]
            if done >= count:
                break
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"a worker exited; see {LOG_DIR}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {count} runs finished in time")
    for thread in threads:
        thread.join()
    return {
        "polls": polls,
        "first_post_epoch": first_post[0],
        "post_latency": summary(latencies),
    }


def _run_figures(conn, version_id: int, first_id: int, first_post_epoch: float) -> dict:
    where = f"{RUN.id} > %s AND {RUN.version} = %s"
    runs, last_finish = conn.execute(
        f"SELECT count(*), extract(epoch FROM max({RUN.finished_at})) "
        f"FROM {RUN.table} WHERE {where}",
        [first_id, version_id],
    ).fetchone()
    statuses = dict(
        conn.execute(
            f"SELECT {RUN.status}, count(*) FROM {RUN.table} WHERE {where} GROUP BY {RUN.status}",
            [first_id, version_id],
        ).fetchall()
    )
    run_ids = f"SELECT {RUN.id} FROM {RUN.table} WHERE {where}"
    steps, events = conn.execute(
        f"SELECT (SELECT count(*) FROM {STEP.table} WHERE {STEP.run} IN ({run_ids})),"
        f" (SELECT count(*) FROM {EVENT.table} WHERE {EVENT.run} IN ({run_ids}))",
        [first_id, version_id, first_id, version_id],
    ).fetchone()
    write_transactions = conn.execute(
        f"""
        SELECT count(DISTINCT x) FROM (
            SELECT xmin::text AS x FROM {RUN.table} WHERE {where}
            UNION ALL SELECT xmin::text FROM {STEP.table} WHERE {STEP.run} IN ({run_ids})
            UNION ALL SELECT xmin::text FROM {EVENT.table} WHERE {EVENT.run} IN ({run_ids})
        ) stamped
        """,
        [first_id, version_id] * 3,
    ).fetchone()[0]
    return {
        "runs": runs,
        "statuses": statuses,
        "seconds": float(last_finish) - first_post_epoch if runs else 0.0,
        "steps_per_run": round(steps / runs, 2) if runs else 0,
        "events_per_run": round(events / runs, 2) if runs else 0,
        "write_transactions": write_transactions,
    }
