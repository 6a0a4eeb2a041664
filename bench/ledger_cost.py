"""What the ledger costs: the start-run API and the engine with the ledger off and on, side by
side in one run, and how long a fact waits for a signed checkpoint.

BENCH_LEDGER_PAIRS pairs of phases (default 4), which alternate the mode that goes first
(ON OFF, OFF ON, ON OFF, OFF ON, ...: neither mode always has the warmer or the colder
machine). OFF: the queue trigger (runs.ledger_queue) is dropped and no sealer runs, the product
as it was before the ledger. ON: the trigger is installed and a sealer runs (`manage.py
run_scheduler --interval 86400`, in the workers' environment, its checkpoints written to a
temporary directory under bench-results/; the long interval keeps its reaper and cron tick to
the one at start-up, so only the ledger's work differs between the modes). Each phase measures
the paced start-run API (BENCH_API_REQUESTS POSTs at BENCH_API_RATE from BENCH_API_CLIENTS
clients, no workers running, as bench/api_load does) and then the engine (BENCH_THROUGHPUT_RUNS
runs through two workers, as bench/throughput does, the workers first draining the API phase's
runs). The figures are each pair's on/off ratio of runs/s, of the API's client-side p95 and of
CPU per run (in ON, the sealer's CPU and that of its PostgreSQL backend are counted, up to
the moment it has sealed the phase's last event). PASS: median on/off ratio of runs/s >= 0.90
and of API p95 <= 1.10. The trigger is installed again at the end whatever happens: the
product needs it.

Seal lag (bench/seal_lag.py), for every event of an ON phase's engine runs: from the event's
created_at to the first signed checkpoint covering it. Printed as p50/p95/max; PASS when
>= 95 % are within 5 s. An event not sealed within SEAL_WAIT_SECONDS of the phase's end counts
as late. Beside each phase, the CPUs that other processes kept busy (a shared machine's noise).

The bundle of the intact 1,000-step run is measured in bench/ledger_bundle.py.
"""

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from django.db import connection
from django.test import override_settings
from django.utils import timezone

from bench import api_load, database, ledger_bundle, procs, scenario, seal_lag, throughput
from bench.api_load import LOG_DIR, Server
from bench.env import env_int
from bench.report import summary
from bench.schema import EVENT, QUEUE, RUN
from runs import ledger, ledger_queue

DEFAULT_PAIRS = 4
MIN_RUNS_RATIO = 0.90
MAX_API_P95_RATIO = 1.10
SEAL_WAIT_SECONDS = 120
API_WARM_UP_REQUESTS = 200  # once, for a fresh gunicorn
PHASE_WARM_UP_REQUESTS = 50  # after each switch of the trigger
API_FIRST_INDEX = 20_000_000  # inputs distinct from the other parts'
# A queue left by earlier writes (the api and throughput parts run with the trigger installed
# but no sealer; a seed made after the trigger existed would leave millions) is sealed before
# measuring when it is small enough to seal within PREFILLED_SEAL_SECONDS; what is left, all of
# it events older than the measurement, is deleted from the queue instead (the report says so):
# those events then stay outside the ledger, as the COPY-seeded ones are in any case.
PREFILLED_SEAL_MAX = 100_000
PREFILLED_SEAL_SECONDS = 60


def phase_order(pairs: int) -> tuple[str, ...]:
    """ON OFF, OFF ON, ON OFF, ...: each pair's first phase alternates."""
    return tuple(
        mode
        for pair in range(pairs)
        for mode in (("on", "off") if pair % 2 == 0 else ("off", "on"))
    )


def measure(config: dict, srv: Server) -> dict:
    LOG_DIR.parent.mkdir(parents=True, exist_ok=True)
    checkpoints = Path(tempfile.mkdtemp(prefix="ledger-checkpoints-", dir=LOG_DIR.parent))
    try:
        with override_settings(LEDGER_CHECKPOINT_DIR=checkpoints):
            return _measure(config, srv, checkpoints)
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)


def _measure(config: dict, srv: Server, checkpoints: Path) -> dict:
    version = scenario.ensure_throughput_version()
    started = timezone.now()
    try:
        _set_trigger(True)
        prefilled = _settle_queue(started)
        api_load.warm_up(
            srv, clients=config["api_clients"], requests=API_WARM_UP_REQUESTS, first_index=0
        )
        phases, lags = [], []
        order = phase_order(env_int("BENCH_LEDGER_PAIRS", DEFAULT_PAIRS))
        for number, mode in enumerate(order):
            print(f"ledger: phase {number + 1} of {len(order)}, ledger {mode}")
            phase, phase_lags = _phase(config, srv, version.pk, mode, number, checkpoints)
            phases.append(phase)
            if phase_lags is not None:
                lags.append(phase_lags)
    finally:
        _set_trigger(True)
    installed = trigger_installed()
    bundle = ledger_bundle.measure()
    return _figures(phases, lags, prefilled, installed, bundle)


# --- the trigger, the queue and the sealer ----------------------------------------------------
def _set_trigger(on: bool) -> None:
    if on:
        connection.close()  # a fresh connection, even after an error on the old one
        ledger_queue.install(connection)
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {ledger_queue.TRIGGER} ON {EVENT.table}")


def trigger_installed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass)",
            [ledger_queue.TRIGGER, EVENT.table],
        )
        return cursor.fetchone()[0]


def _queued() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {QUEUE.table}")
        return cursor.fetchone()[0]


def _anything_queued() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {QUEUE.table})")
        return cursor.fetchone()[0]


def _settle_queue(started) -> dict:
    """Seal, or else take out of the queue, the events queued before the measurement."""
    queued = _queued()
    sealed = deleted = 0
    if 0 < queued <= PREFILLED_SEAL_MAX:
        deadline = time.monotonic() + PREFILLED_SEAL_SECONDS
        while time.monotonic() < deadline and (done := ledger.seal()) is not None:
            sealed += done.leaves_added
    if queued and _anything_queued():
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {QUEUE.table} q USING {EVENT.table} e "
                f"WHERE e.{EVENT.id} = q.{QUEUE.event} AND e.{EVENT.created_at} < %s",
                [started],
            )
            deleted = cursor.rowcount
    if queued:
        print(f"ledger: {queued:,} events were queued: {sealed:,} sealed, {deleted:,} dequeued")
    return {"queued": queued, "sealed": sealed, "deleted": deleted}


def _start_sealer(checkpoints: Path, number: int):
    log = LOG_DIR / f"sealer-{number + 1}.log"
    sealer = procs.start(
        [procs.python(), "manage.py", "run_scheduler", "--interval", "86400"],
        log_path=log,
        env={"LEDGER_CHECKPOINT_DIR": str(checkpoints), "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while "Scheduler running" not in log.read_text():
        if sealer.poll() is not None or time.monotonic() > deadline:
            procs.stop(sealer)
            raise RuntimeError(f"the sealer did not start; see {log}")
        time.sleep(0.2)
    return sealer


def _wait_sealed(sealer, timeout: float = SEAL_WAIT_SECONDS) -> bool:
    """Until the queue is empty (True), or the timeout (False)."""
    deadline = time.monotonic() + timeout
    while _anything_queued():
        if sealer.poll() is not None:
            raise RuntimeError(f"the sealer exited; see {LOG_DIR}")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# --- one phase --------------------------------------------------------------------------------
def _phase(config: dict, srv: Server, version_id: int, mode: str, number: int, checkpoints):
    """One phase's figures, and (ON) the seal lag of each of its engine runs' events."""
    _set_trigger(mode == "on")
    sealer = _start_sealer(checkpoints, number) if mode == "on" else None
    try:
        if sealer is not None:
            _wait_sealed(sealer)
        first_index = API_FIRST_INDEX + number * (config["api_requests"] + 1_000)
        api = _api_phase(config, srv, first_index, sealer)
        engine = _engine_phase(config, srv, version_id, sealer)
    finally:
        if sealer is not None:
            procs.stop(sealer)
    first_id = engine.pop("first_id")
    lags = seal_lag.lags(version_id, first_id) if sealer is not None else None
    return {"mode": mode, "api": api, "engine": engine}, lags


def _api_phase(config: dict, srv: Server, first_index: int, sealer) -> dict:
    clients, requests = config["api_clients"], config["api_requests"]
    rate = float(os.environ.get("BENCH_API_RATE", "200"))
    api_load.warm_up(srv, clients=clients, requests=PHASE_WARM_UP_REQUESTS, first_index=first_index)
    mark = api_load._log_lines(srv.access_log)
    meter = _meter(config, srv, [], sealer)
    outcome = api_load.drive_clients(
        srv,
        clients=clients,
        requests=requests,
        rate=rate,
        first_index=first_index + PHASE_WARM_UP_REQUESTS,
    )
    cpu = meter.stop()
    time.sleep(0.5)  # let gunicorn flush its access log
    server_ms, _ = api_load._server_times(srv.access_log, mark)
    if outcome["statuses"].keys() - {202} or outcome["error_count"]:
        raise RuntimeError(
            f"the API answered {outcome['statuses']} ({outcome['errors']}); see {LOG_DIR}"
        )
    served = len(outcome["latencies"])
    return {
        **summary(outcome["latencies"]),
        "server_time": summary(server_ms),
        "offered_rate": rate,
        "achieved_rate": round(served / outcome["seconds"], 1) if outcome["seconds"] else 0.0,
        "other_cpus": cpu["other_cpus"],
        "cpu_ms_per_request": {
            group: round(seconds * 1000 / served, 2) if served else 0.0
            for group, seconds in cpu["cpu_seconds"].items()
        },
    }


def _engine_phase(config: dict, srv: Server, version_id: int, sealer) -> dict:
    url = config["database_url"]
    workers = throughput._start_workers(config["worker_threads"])
    try:
        throughput._wait_drained(url, version_id, workers)  # the API phase's runs
        throughput._warm_up(srv, url, version_id, workers)
        if sealer is not None:
            _wait_sealed(sealer)
        first_id = _last_run_id()
        meter = _meter(config, srv, workers, sealer)
        outcome = throughput._post_and_wait(
            srv, url, version_id, first_id, config["throughput_runs"], workers
        )
        # The sealer's work on the phase's last events belongs to the phase's cost.
        caught_up = _wait_sealed(sealer) if sealer is not None else None
        cpu = meter.stop()
    finally:
        for worker in workers:
            procs.stop(worker)
    with database.connect(url) as conn:
        figures = throughput._run_figures(conn, version_id, first_id, outcome["first_post_epoch"])
    runs = figures["runs"]
    return {
        "first_id": first_id,
        "runs": runs,
        "statuses": figures["statuses"],
        "events_per_run": figures["events_per_run"],
        "seconds": round(figures["seconds"], 2),
        "runs_per_second": round(runs / figures["seconds"], 1) if figures["seconds"] else 0.0,
        "sealer_caught_up": caught_up,
        "other_cpus": cpu["other_cpus"],
        "cpu_ms_per_run": {
            group: round(seconds * 1000 / runs, 2) for group, seconds in cpu["cpu_seconds"].items()
        }
        if runs
        else {},
    }


class _Meter(procs.CpuMeter):
    """CPU of the processes taking part (bench/throughput's groups, and the sealer in ON),
    and how many CPUs the machine's other processes kept busy meanwhile: a phase beside
    someone else's work on a shared machine is not a fair half of a pair."""

    def start(self) -> None:
        self.busy = procs.system_busy_seconds()
        super().start()

    def stop(self) -> dict:
        cpu = super().stop()
        others = procs.system_busy_seconds() - self.busy - sum(cpu["cpu_seconds"].values())
        cpu["other_cpus"] = round(max(others, 0.0) / cpu["wall_seconds"], 2)
        return cpu


def _meter(config: dict, srv: Server, workers, sealer) -> _Meter:
    groups = throughput._cpu_meter(srv, workers, database.database_name(config["database_url"]))
    meter = _Meter(groups.groups)
    if sealer is not None:
        meter.groups["sealer"] = lambda: procs.descendants(sealer.pid)
    meter.start()
    return meter


def _last_run_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max({RUN.id}), 0) FROM {RUN.table}")
        return cursor.fetchone()[0]


# --- the figures ------------------------------------------------------------------------------
def _ratio(on, off) -> float | None:
    return round(on / off, 3) if on is not None and off else None


def _pairs(phases: list[dict]) -> list[dict]:
    """Each ON phase with the OFF phase next to it (after it; before it in OFF-first orders)."""
    pairs = []
    for first, second in zip(phases[::2], phases[1::2], strict=True):
        on, off = (first, second) if first["mode"] == "on" else (second, first)
        on_cpu = sum(on["engine"]["cpu_ms_per_run"].values())
        off_cpu = sum(off["engine"]["cpu_ms_per_run"].values())
        pairs.append(
            {
                "runs_per_second": {
                    "on": on["engine"]["runs_per_second"],
                    "off": off["engine"]["runs_per_second"],
                },
                "api_p95_ms": {"on": on["api"]["p95_ms"], "off": off["api"]["p95_ms"]},
                "cpu_ms_per_run": {
                    "on": round(on_cpu, 2),
                    "off": round(off_cpu, 2),
                    "sealer": on["engine"]["cpu_ms_per_run"].get("sealer", 0.0),
                },
                "other_cpus": {
                    mode: max(phase["api"]["other_cpus"], phase["engine"]["other_cpus"])
                    for mode, phase in (("on", on), ("off", off))
                },
            }
        )
        for name in ("runs_per_second", "api_p95_ms", "cpu_ms_per_run"):
            pairs[-1][name]["ratio"] = _ratio(pairs[-1][name]["on"], pairs[-1][name]["off"])
    return pairs


def _figures(phases, lags, prefilled: dict, installed: bool, bundle: dict) -> dict:
    pairs = _pairs(phases)
    runs_ratios = [p["runs_per_second"]["ratio"] for p in pairs]
    p95_ratios = [p["api_p95_ms"]["ratio"] for p in pairs]
    median = {
        "runs_per_second": statistics.median(r if r is not None else 0.0 for r in runs_ratios),
        "api_p95_ms": statistics.median(r if r is not None else float("inf") for r in p95_ratios),
    }
    all_lags = seal_lag.summary([lag for phase_lags in lags for lag in phase_lags])
    verdicts = {
        "runs_per_second": median["runs_per_second"] >= MIN_RUNS_RATIO,
        "api_p95": median["api_p95_ms"] <= MAX_API_P95_RATIO,
        "seal_lag": all_lags["within_share"] >= seal_lag.LAG_TARGET_SHARE,
        "bundle_verify": bundle.get("verdict", False),
        "trigger_installed": installed,
    }
    return {
        "order": [phase["mode"] for phase in phases],
        "phases": phases,
        "pairs": pairs,
        "median_ratio": {name: round(value, 3) for name, value in median.items()},
        "targets": {"min_runs_ratio": MIN_RUNS_RATIO, "max_api_p95_ratio": MAX_API_P95_RATIO},
        "seal_lag": {"all": all_lags, "phases": [seal_lag.summary(each) for each in lags]},
        "prefilled_queue": prefilled,
        "bundle": bundle,
        "trigger_installed": installed,
        "verdicts": verdicts,
    }
