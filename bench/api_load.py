"""The start-run API under load: gunicorn serving the app on 127.0.0.1, clients in threads.

Two figures, both with 50 concurrent clients (BENCH_API_CLIENTS), each client on its own
keep-alive connection, loopback only, bounded in count and time:
- paced: the clients together offer a steady BENCH_API_RATE requests/s (default 200, spread
  evenly over the clients); latency is what one backend calling us sees. The target applies.
- saturated: every client sends its next request as soon as the previous answer arrives, to
  find the most the server sustains; latency there is queueing (50 in flight / throughput).
Server time is gunicorn's own request time (%(D)s in its access log), queueing excluded.
"""

import http.client
import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import procs, scenario
from bench.report import summary

TARGET_MS = 25
TIME_LIMIT_SECONDS = 60
WARM_UP_REQUESTS = 200
# Next to the figures (python -m bench --output), so two benchmarks never share their logs.
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "bench-results/logs"))


@dataclass
class Server:
    port: int
    process: object
    access_log: Path
    raw_key: str
    procedure_id: str

    def pids(self) -> list[int]:
        return procs.descendants(self.process.pid)


# On a shared machine under load, two workers importing Django took 37–49 s (2026-12-01).
def _wait_until_up(port: int, process, timeout: float = 120) -> None:
    procs.wait_until_serving(
        port, process, path="/v1/openapi.json", timeout=timeout, log_dir=LOG_DIR
    )


@contextmanager
def server(config: dict):
    """gunicorn on a free loopback port, with a fresh sandbox API key for the clients."""
    from runs.api_keys import create_api_key

    version = scenario.ensure_throughput_version()
    _, raw_key = create_api_key(name="bench clients", environment="sandbox")
    port = procs.free_port()
    access_log = LOG_DIR / "gunicorn-access.log"
    workers = os.environ.get("BENCH_GUNICORN_WORKERS", "2")
    threads = os.environ.get("BENCH_GUNICORN_THREADS", "4")
    process = procs.start(
        [
            procs.python(),
            "-m",
            "gunicorn",
            "rapidfolio.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            workers,
            "--threads",
            threads,
            "--worker-class",
            "gthread",
            "--keep-alive",
            "30",
            "--backlog",
            "256",
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            "%(m)s %(U)s %(s)s %(D)s",
        ],
        log_path=LOG_DIR / "gunicorn.log",
    )
    try:
        _wait_until_up(port, process)
        yield Server(port, process, access_log, raw_key, version.procedure.public_id)
    finally:
        procs.stop(process)


class Client:
    """One API client on its own keep-alive connection."""

    def __init__(self, server: Server):
        self.server = server
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.headers = {
            "Authorization": f"Bearer {server.raw_key}",
            "Content-Type": "application/json",
        }
        self.path = f"/v1/procedures/{server.procedure_id}/sandbox"

    def start_run(self, index: int) -> tuple[float, int]:
        body = json.dumps(scenario.throughput_inputs(index))
        started = time.perf_counter()
        try:
            self.conn.request("POST", self.path, body=body, headers=self.headers)
            response = self.conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            raise
        return (time.perf_counter() - started) * 1000, response.status


def drive_clients(
    server: Server, *, clients: int, requests: int, rate: float | None, first_index: int = 0
) -> dict:
    """`requests` POSTs from `clients` threads; paced at `rate` requests/s in all, or flat out."""
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    next_ticket = [0]
    started = time.perf_counter()
    deadline = started + TIME_LIMIT_SECONDS
    first_post = [None]

    def ticket() -> int | None:
        with lock:
            if next_ticket[0] >= requests or time.perf_counter() > deadline:
                return None
            next_ticket[0] += 1
            return next_ticket[0] - 1

    def work(client_index: int):
        client = Client(server)
        while True:
            number = ticket()
            if number is None:
                return
            if rate:
                # Ticket n is due at n / rate: the clients together offer `rate` requests/s.
                delay = started + number / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            with lock:
                if first_post[0] is None:
                    first_post[0] = time.time()
            try:
                elapsed, status = client.start_run(first_index + number)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "latencies": latencies,
        "statuses": statuses,
        "errors": errors[:5],
        "error_count": len(errors),
        "seconds": wall,
        "first_post_epoch": first_post[0],
        "sent": next_ticket[0],
    }


def warm_up(server: Server, *, clients: int, requests: int, first_index: int) -> None:
    """Unmeasured POSTs, flat out; every one must start a run."""
    outcome = drive_clients(
        server, clients=clients, requests=requests, rate=None, first_index=first_index
    )
    if outcome["statuses"] != {202: requests}:
        raise RuntimeError(
            f"warming up, the API answered {outcome['statuses']} "
            f"({outcome['error_count']} errors: {outcome['errors']}); see {LOG_DIR}"
        )


def _server_times(access_log: Path, after_line: int) -> tuple[list[float], int]:
    lines = access_log.read_text().splitlines() if access_log.exists() else []
    times = []
    for line in lines[after_line:]:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "POST":
            times.append(int(parts[3]) / 1000)
    return times, len(lines)


def _log_lines(access_log: Path) -> int:
    return len(access_log.read_text().splitlines()) if access_log.exists() else 0


def measure(config: dict, srv: Server) -> dict:
    clients = config["api_clients"]
    requests = config["api_requests"]
    rate = float(os.environ.get("BENCH_API_RATE", "200"))
    figures = {}
    details = {}
    index = 10_000_000  # inputs distinct from the throughput phase's
    # A fresh gunicorn's first requests build what later ones reuse (URL resolvers, the API's
    # schemas, connections): send some before measuring, so the figures are the steady state.
    warm_up(srv, clients=clients, requests=WARM_UP_REQUESTS, first_index=index)
    index += WARM_UP_REQUESTS
    for mode, pace in (("paced", rate), ("saturated", None)):
        mark = _log_lines(srv.access_log)
        outcome = drive_clients(
            srv, clients=clients, requests=requests, rate=pace, first_index=index
        )
        index += requests
        time.sleep(0.5)  # let gunicorn flush its access log
        server_ms, _ = _server_times(srv.access_log, mark)
        achieved = len(outcome["latencies"]) / outcome["seconds"] if outcome["seconds"] else 0
        label = (
            f"POST start run, {clients} clients at {pace:.0f} req/s"
            if pace
            else f"POST start run, {clients} clients flat out"
        )
        size = f"{len(outcome['latencies']):,} requests, {achieved:,.0f} req/s"
        figures[label] = {
            **summary(outcome["latencies"]),
            "target_ms": TARGET_MS if pace else None,
            "size": size,
        }
        figures[f"  server time ({mode})"] = {**summary(server_ms), "size": "gunicorn %(D)s"}
        details[mode] = {
            "offered_rate": pace,
            "achieved_rate": round(achieved, 1),
            "statuses": outcome["statuses"],
            "errors": outcome["errors"],
            "error_count": outcome["error_count"],
            "seconds": round(outcome["seconds"], 2),
        }
        if outcome["statuses"].keys() - {202}:
            raise RuntimeError(f"the API answered {outcome['statuses']}: see {LOG_DIR}")
    return {
        "figures": figures,
        "details": details,
        "gunicorn": {
            "workers": int(os.environ.get("BENCH_GUNICORN_WORKERS", "2")),
            "threads": int(os.environ.get("BENCH_GUNICORN_THREADS", "4")),
        },
    }
