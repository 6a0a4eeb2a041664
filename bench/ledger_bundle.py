"""The evidence bundle of the intact 1,000-step run: built (export) and verified offline.

The run is bench/scenario.py's long run (the integrity check's), 1,000 steps and 1,003 events.
It is sealed first: its events become ledger leaves through the queue, as every event does.
A run made before the ledger existed, or whose queue rows were taken out as pre-filled
(bench/ledger_cost.py), has events that are neither leaves nor queued; the benchmark queues
those in id order, as the trigger would have, then seals in-process until nothing is queued.
Export is `runs.evidence.bundle(run)` and its JSON text as `manage.py export_run` writes it;
verification is `rapidfolio_verify.bundle.verify_bundle` of that text parsed, with the public
key from `rapidfolio.keys`, VERIFY_REPETITIONS times. PASS: verification p95 < 200 ms.
Call inside ledger_cost's override of LEDGER_CHECKPOINT_DIR (the checkpoints it reads).
"""

import json
import time

from django.db import connection

from bench import scenario
from bench.report import summary
from bench.schema import EVENT, LEAF, QUEUE
from rapidfolio import keys
from rapidfolio_verify.bundle import VerificationError, verify_bundle
from runs import evidence, ledger
from runs.models import Run

VERIFY_TARGET_MS = 200
VERIFY_REPETITIONS = 20
EXPORT_REPETITIONS = 5
WARM_UP = 2
SEAL_SECONDS = 300


def measure() -> dict:
    run = Run.objects.select_related("procedure", "version", "failed_step").get(
        public_id=scenario.ensure_long_run()
    )
    queued = _queue_unsealed(run.pk)
    leaves = _seal_all()
    size = f"{run.steps.count():,} steps, {run.events.count():,} events"
    result = {"run": run.public_id, "size": size, "queued": queued, "leaves_sealed": leaves}
    try:
        export_ms, text = _time_export(run)
        document = json.loads(text)
        public_key = keys.public_key_bytes()
        verify_bundle(document, public_key)  # a bundle that fails is a finding, not a figure
    except (evidence.NotSealed, VerificationError) as exc:
        print(f"ledger: the bundle of {run.public_id} does not verify: {exc}")
        return {**result, "error": str(exc), "verdict": False}
    verify_ms = _time(lambda: verify_bundle(document, public_key), VERIFY_REPETITIONS)
    parse_ms = _time(lambda: json.loads(text), VERIFY_REPETITIONS)
    verify = summary(verify_ms)
    return {
        **result,
        "bytes": len(text.encode()),
        "events_in_bundle": len(document["events"]),
        "tree_size": document["tree_size"],
        "export": summary(export_ms),
        "verify": verify,
        "json_parse": summary(parse_ms),
        "target_ms": VERIFY_TARGET_MS,
        "verdict": verify["p95_ms"] < VERIFY_TARGET_MS,
    }


def _queue_unsealed(run_id: int) -> int:
    """Queue the run's events that are neither leaves nor queued (see the module docstring)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {QUEUE.table} ({QUEUE.event})
            SELECT e.{EVENT.id} FROM {EVENT.table} e
            WHERE e.{EVENT.run} = %s
              AND NOT EXISTS (SELECT 1 FROM {LEAF.table} l WHERE l.{LEAF.event} = e.{EVENT.id})
              AND NOT EXISTS (SELECT 1 FROM {QUEUE.table} q WHERE q.{QUEUE.event} = e.{EVENT.id})
            ORDER BY e.{EVENT.id}
            """,
            [run_id],
        )
        return cursor.rowcount


def _seal_all() -> int:
    leaves = 0
    deadline = time.monotonic() + SEAL_SECONDS
    while (sealed := ledger.seal()) is not None:
        leaves += sealed.leaves_added
        if time.monotonic() > deadline:
            raise RuntimeError(f"the ledger was not sealed within {SEAL_SECONDS} s")
    return leaves


def _export(run: Run) -> str:
    document = evidence.bundle(run)
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def _time_export(run: Run) -> tuple[list[float], str]:
    text = _export(run)
    timings = _time(lambda: _export(run), EXPORT_REPETITIONS)
    return timings, text


def _time(call, repetitions: int) -> list[float]:
    for _ in range(WARM_UP):
        call()
    timings = []
    for _ in range(repetitions):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings
