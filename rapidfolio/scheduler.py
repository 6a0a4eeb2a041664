"""Periodic work: seal the ledger, re-enqueue stuck runs and fire due cron triggers.

In production run one or more `manage.py run_scheduler` processes (several are safe: cron
firings are deduplicated by a database unique constraint, and reaping twice is harmless). The
embedded default runs the same loop in a thread of `manage.py serve`.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from runs import ledger
from runs.services import reap_stuck_runs
from runs.triggers.cron import fire_due_cron_triggers

logger = logging.getLogger(__name__)

TICK_SECONDS = 10


def tick() -> None:
    reaped = reap_stuck_runs()
    if reaped:
        logger.warning("re-enqueued %d stuck run(s)", len(reaped))
    fire_due_cron_triggers()


def seal_ledger() -> None:
    """Seal what is queued, in one checkpoint (or several while a backlog fills whole
    batches). It then waits LEDGER_SEAL_INTERVAL_SECONDS: sealing again at once under steady
    writes would sign a checkpoint of a few leaves every few milliseconds, at the cost of the
    web and worker processes' CPU. The ledger's target is 95 % of facts signed within 5 s."""
    while (sealed := ledger.seal()) is not None:
        logger.info(
            "ledger sealed %d leaves in checkpoint %d",
            sealed.leaves_added,
            sealed.checkpoint.tree_size,
        )
        if sealed.leaves_added < ledger.SEAL_BATCH:
            return


def run_forever(stop: threading.Event | None = None, interval: float = TICK_SECONDS) -> None:
    stop = stop or threading.Event()
    next_tick = 0.0
    while not stop.is_set():
        _safely(seal_ledger)
        if time.monotonic() >= next_tick:
            next_tick = time.monotonic() + interval
            _safely(tick)
        stop.wait(min(settings.LEDGER_SEAL_INTERVAL_SECONDS, interval))


def _safely(work) -> None:
    try:
        work()
    except Exception:  # noqa: BLE001 — one bad pass must not stop the scheduler
        logger.exception("scheduler: %s failed", work.__name__)
    finally:
        close_old_connections()


def start_in_thread() -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(stop,), name="scheduler", daemon=True).start()
    return stop
