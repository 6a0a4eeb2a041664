"""The Runs list's Export at full size: every run of the bench database downloaded as CSV (and
JSON Lines) through gunicorn, as a browser downloads /runs/export.csv.

gunicorn runs as the Procfile runs it (gthread workers; BENCH_EXPORT_WORKER_CLASS=sync for the
sync worker, whose --timeout then bounds a download), with one worker, so that the process
that serves the download is known. The bench's operator, who sees both environments, is signed
in by a session made here; the client reads the answer over one connection as fast as it
arrives and counts its lines. Figures per format: rows, seconds, rows/s, MB, time to the first
byte, and the serving worker's memory: its RSS after a small warm-up export, its peak RSS while
the big one streamed (sampled from /proc/<pid>/status every 0.2 s) and VmHWM (the kernel's peak)
at the end. PASS: every run arrived (as many rows as the runs created before the export) and
the worker's peak stayed under PEAK_RSS_LIMIT_MB: constant memory, not a table in a list.
"""

import http.client
import os
import threading
import time
from pathlib import Path

from bench import database, procs

LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "bench-results/logs"))
PEAK_RSS_LIMIT_MB = 300
FORMATS = {"csv": ("/runs/export.csv", b"\r\n"), "jsonl": ("/runs/export.jsonl", b"\n")}
READ_BYTES = 1 << 20
SAMPLE_SECONDS = 0.2


def measure(config: dict) -> dict:
    from runs.models import Run

    cookie = _operator_session_cookie()
    dbname = database.database_name(config["database_url"])
    formats = [f.strip() for f in os.environ.get("BENCH_EXPORT_FORMATS", "csv,jsonl").split(",")]
    worker_class = os.environ.get("BENCH_EXPORT_WORKER_CLASS", "gthread")
    port = procs.free_port()
    process = procs.start(
        [
            procs.python(),
            "-m",
            "gunicorn",
            "rapidfolio.wsgi:application",
            "--config",
            "python:rapidfolio.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            # More than one thread turns gunicorn's sync worker into gthread.
            "1" if worker_class == "sync" else "4",
            "--worker-class",
            worker_class,
            "--timeout",
            os.environ.get("BENCH_EXPORT_TIMEOUT", "30"),
        ],
        log_path=LOG_DIR / "gunicorn-export.log",
    )
    figures = {}
    try:
        worker = _wait_for_worker(port, process)
        for name in formats:
            path, line_end = FORMATS[name]
            # A small export first: the worker has imported and connected before it is measured.
            _download(port, f"{path}?status=pending", cookie, line_end)
            expected = Run.objects.count()
            baseline_mb = _status_mb(worker, "VmRSS")
            backends = procs.postgres_backends(dbname)
            cpu_before = procs.cpu_seconds([worker, *backends])
            sampler = _RssSampler(worker)
            with sampler:
                result = _download(port, path, cookie, line_end)
            # A connection the download's thread opened is new: all its CPU is the download's.
            backends = sorted({*backends, *procs.postgres_backends(dbname)})
            cpu = _cpu_used(cpu_before, procs.cpu_seconds([worker, *backends]))
            rows = result["lines"] - (1 if name == "csv" else 0)  # the CSV's header
            peak_mb = max(sampler.peak_mb, _status_mb(worker, "VmHWM"))
            figures[name] = {
                "path": path,
                "status": result["status"],
                "cut_off": result["cut_off"],
                "rows": rows,
                "expected_rows": expected,
                "seconds": round(result["seconds"], 2),
                "rows_per_second": round(rows / result["seconds"]) if result["seconds"] else None,
                "megabytes": round(result["bytes"] / 1e6, 1),
                "first_byte_ms": round(result["first_byte"] * 1000, 1),
                "rss_before_mb": baseline_mb,
                "rss_peak_mb": peak_mb,
                "rss_samples_mb": sampler.samples_mb,
                # CPU seconds, whatever else the machine ran: the worker's, and PostgreSQL's
                # (the backends of the bench database, the worker's among them).
                "worker_cpu_seconds": cpu.get(worker, 0.0),
                "postgres_cpu_seconds": round(sum(cpu.get(pid, 0.0) for pid in backends), 2),
                "ok": result["status"] == 200
                and not result["cut_off"]
                and rows == expected
                and peak_mb < PEAK_RSS_LIMIT_MB,
            }
    finally:
        procs.stop(process)
    return {
        "via": f"gunicorn ({worker_class}, 1 worker)",
        "peak_rss_limit_mb": PEAK_RSS_LIMIT_MB,
        "formats": figures,
        "ok": all(figure["ok"] for figure in figures.values()),
    }


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {pid: round(after[pid] - before.get(pid, 0.0), 2) for pid in after}


def _operator_session_cookie() -> str:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from bench import scenario
    from rapidfolio.roles import LIVE_ENVIRONMENT

    operator = User.objects.get(username=scenario.OPERATOR)
    operator.groups.add(Group.objects.get(name=LIVE_ENVIRONMENT))
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(operator)  # a session in the database, which gunicorn reads
    from django.conf import settings

    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _wait_for_worker(port: int, process, timeout: float = 30) -> int:
    """The pid of gunicorn's one worker, once the server answers."""
    procs.wait_until_serving(port, process, path="/healthz", timeout=timeout, log_dir=LOG_DIR)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = procs.descendants(process.pid)[1:]
        if len(workers) == 1:
            return workers[0]
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {timeout:g} s")


def _download(port: int, path: str, cookie: str, line_end: bytes) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": cookie, "Host": "127.0.0.1"})
    response = conn.getresponse()
    first_byte = None
    size = lines = 0
    previous = b""
    cut_off = False
    try:
        while chunk := response.read1(READ_BYTES):
            if first_byte is None:
                first_byte = time.perf_counter() - started
            size += len(chunk)
            lines += chunk.count(line_end)
            # A CSV line's \r\n can arrive split across two reads.
            if len(line_end) == 2 and previous[-1:] == line_end[:1] and chunk[:1] == line_end[1:]:
                lines += 1
            previous = chunk
    except (http.client.IncompleteRead, ConnectionError):
        cut_off = True  # e.g. a sync worker killed at its --timeout
    seconds = time.perf_counter() - started
    conn.close()
    return {
        "cut_off": cut_off,
        "status": response.status,
        "bytes": size,
        "lines": lines,
        "seconds": seconds,
        "first_byte": first_byte or seconds,
    }


def _status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status (VmRSS now, VmHWM the peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class _RssSampler:
    """The worker's RSS every SAMPLE_SECONDS while the with block runs: its peak, and ten
    samples spread over the download (flat when memory is constant)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.readings: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    def _sample(self):
        while not self.done.wait(SAMPLE_SECONDS):
            self.readings.append(_status_mb(self.pid, "VmRSS"))

    @property
    def peak_mb(self) -> float:
        return max(self.readings, default=0.0)

    @property
    def samples_mb(self) -> list[float]:
        if len(self.readings) <= 10:
            return self.readings
        step = len(self.readings) / 10
        return [self.readings[int(i * step)] for i in range(10)] + [self.readings[-1]]


def report_lines(export: dict, load: str = "") -> list[str]:
    """The part's lines in `make bench`'s report (`load`: the load average, as the report
    prints it)."""
    lines = [
        f"  export of every run through {export['via']}, load {load or 'unknown'}: PASS when "
        f"all arrive and the worker's peak RSS stays under {export['peak_rss_limit_mb']} MB",
    ]
    for f in export["formats"].values():
        lines.append(
            f"    {'PASS' if f['ok'] else 'FAIL'}  {f['path']}: "
            f"{'cut off after ' if f['cut_off'] else ''}{f['rows']:,} of "
            f"{f['expected_rows']:,} rows in {f['seconds']:,.1f} s ({f['rows_per_second'] or 0:,} "
            f"rows/s, {f['megabytes']:,.1f} MB, first byte {f['first_byte_ms']:,.0f} ms); "
            f"worker RSS {f['rss_before_mb']:,.0f} MB before, peak {f['rss_peak_mb']:,.0f} MB; "
            f"CPU: worker {f['worker_cpu_seconds']:,.1f} s, PostgreSQL "
            f"{f['postgres_cpu_seconds']:,.1f} s"
        )
    return lines
