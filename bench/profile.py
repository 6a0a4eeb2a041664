"""CPU per start-run POST and per engine run, in one process, optionally under a profiler.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rapidfolio_profile \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.profile [--runs 300]
        [--profiler cprofile|pyinstrument] [--part api,engine]

The throughput phase of `make bench` measures the whole pipeline (gunicorn, Dramatiq workers,
PostgreSQL) but cannot say where a millisecond goes. This drives the same procedure the same
way without the servers around it: N POSTs through Django's test client (the real API view,
middleware and Redis enqueue), then `engine.drive` of each run in this process, and prints the
CPU time (`time.process_time`) and statements of each. Use a scratch database, not the bench's:
it is created and migrated when missing, and the runs it makes are left in it. The enqueued
messages go to a namespace of their own, which is emptied at the end.
"""

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

from bench import env

NAMESPACE = "rapidfolio-profile"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--profiler", choices=("none", "cprofile", "pyinstrument"), default="none")
    parser.add_argument(
        "--part",
        default="api,engine",
        help="api (the POSTs), engine (engine.drive of each run in this thread) or worker "
        "(a Dramatiq worker on Redis in this process executes them)",
    )
    parser.add_argument("--threads", type=int, default=4, help="worker threads for --part worker")
    parser.add_argument("--top", type=int, default=40, help="cProfile rows to print")
    args = parser.parse_args(argv)
    os.environ["DRAMATIQ_NAMESPACE"] = NAMESPACE
    try:
        config = env.configure()
    except env.SetupError as exc:
        print(f"bench.profile: {exc}", file=sys.stderr)
        return 2
    from bench import database

    database.ensure_database(config["database_url"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    parts = {part.strip() for part in args.part.split(",")}
    run_ids = _post_runs(args.runs, measure="api" in parts, profiler=args.profiler, top=args.top)
    if "engine" in parts:
        _drive_runs(run_ids, profiler=args.profiler, top=args.top)
    elif "worker" in parts:
        _work_runs(run_ids, threads=args.threads, profiler=args.profiler, top=args.top)
    _empty_namespace()
    return 0


class _Profiler:
    def __init__(self, kind: str, top: int):
        self.kind, self.top = kind, top
        self.profiler = None

    def __enter__(self):
        if self.kind == "cprofile":
            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()
        elif self.kind == "pyinstrument":
            from pyinstrument import Profiler

            self.profiler = Profiler(interval=0.0002)
            self.profiler.start()
        return self

    def __exit__(self, *exc):
        if self.kind == "cprofile":
            self.profiler.disable()
            stats = pstats.Stats(self.profiler)
            stats.sort_stats("tottime").print_stats(self.top)
            stats.sort_stats("cumulative").print_stats(self.top)
        elif self.kind == "pyinstrument":
            self.profiler.stop()
            print(self.profiler.output_text(unicode=True, color=False, show_all=False))


class _Statements:
    """Counts the statements Django sends, without keeping them."""

    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def _post_runs(count: int, *, measure: bool, profiler: str, top: int) -> list[int]:
    from django.db import connection

    from bench import scenario
    from rapidfolio.test_client import Client
    from runs.api_keys import create_api_key
    from runs.models import Run

    version = scenario.ensure_throughput_version()
    _, raw_key = create_api_key(name="bench profile", environment="sandbox")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_HOST="127.0.0.1")
    path = f"/v1/procedures/{version.procedure.public_id}/sandbox"
    # Warm up: the first request imports and compiles what the others reuse.
    client.post(path, scenario.throughput_inputs(0), content_type="application/json")
    statements = _Statements()
    cpu = []
    public_ids = []
    backend_before = _backend_cpu()
    with _Profiler(profiler if measure else "none", top), connection.execute_wrapper(statements):
        for index in range(1, count + 1):
            started = time.process_time()
            response = client.post(
                path, scenario.throughput_inputs(index), content_type="application/json"
            )
            cpu.append((time.process_time() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"POST answered {response.status_code}: {response.content!r}")
            public_ids.append(response.json()["id"])
    backend_ms = (_backend_cpu() - backend_before) * 1000 / count
    if measure:
        _report("POST /v1/procedures/{id}/sandbox", cpu, statements.count / count, backend_ms)
    return list(Run.objects.filter(public_id__in=public_ids).values_list("pk", flat=True))


def _drive_runs(run_ids: list[int], *, profiler: str, top: int) -> None:
    from django.db import connection

    from runs import engine
    from runs.models import Run

    warm, measured = run_ids[:1], run_ids[1:]
    for run_id in warm:
        engine.drive(run_id)
    statements = _Statements()
    cpu = []
    backend_before = _backend_cpu()
    with _Profiler(profiler, top), connection.execute_wrapper(statements):
        for run_id in measured:
            started = time.process_time()
            engine.drive(run_id)
            cpu.append((time.process_time() - started) * 1000)
    backend_ms = (_backend_cpu() - backend_before) * 1000 / len(measured)
    statuses = set(Run.objects.filter(pk__in=measured).values_list("status", flat=True))
    _report(
        f"engine.drive (runs ended {', '.join(sorted(statuses))})",
        cpu,
        statements.count / len(measured),
        backend_ms,
    )


def _work_runs(run_ids: list[int], *, threads: int, profiler: str, top: int) -> None:
    """The POSTs' messages, executed by a Dramatiq worker with `threads` threads in this
    process: the engine plus Dramatiq's own handling, middleware and thread switching."""
    import dramatiq

    from procedures.tools import all_tools
    from rapidfolio.broker import QUEUES
    from runs.models import Run

    broker = dramatiq.get_broker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    all_tools()  # a worker imports the integrations' SDKs once; not part of a run's cost
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    with _Profiler(profiler, top):
        worker.start()
        unfinished = Run.objects.filter(
            pk__range=(min(run_ids), max(run_ids)), status__in=("pending", "running")
        )
        while unfinished.exists():
            time.sleep(0.1)
        cpu = time.process_time() - started_cpu
        wall = time.perf_counter() - started_wall
        worker.stop()
    print(
        f"Dramatiq worker, {threads} threads: {len(run_ids)} runs in {wall:.2f} s "
        f"({len(run_ids) / wall:.1f} runs/s), CPU {cpu * 1000 / len(run_ids):.2f} ms per run "
        "(including this thread's polling)"
    )


def _backend_cpu() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (same machine only)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(
    label: str, cpu_ms: list[float], statements: float, backend_ms: float | None = None
) -> None:
    cpu_ms = sorted(cpu_ms)
    p95 = cpu_ms[min(len(cpu_ms) - 1, int(len(cpu_ms) * 0.95))]
    backend = f"; PostgreSQL backend {backend_ms:.2f} ms each" if backend_ms is not None else ""
    print(
        f"{label}: {len(cpu_ms)} × CPU median {statistics.median(cpu_ms):.2f} ms, "
        f"mean {statistics.fmean(cpu_ms):.2f} ms, p95 {p95:.2f} ms; "
        f"{statements:.1f} statements each{backend}"
    )


def _empty_namespace() -> None:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{NAMESPACE}*"))
    if keys:
        client.delete(*keys)


if __name__ == "__main__":
    sys.exit(main())
