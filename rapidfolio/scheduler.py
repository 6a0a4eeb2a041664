"""Periodic work: seal the ledger, send the outbox, re-enqueue stuck runs, fire due cron
triggers and decide the reviews whose deadline passed (reviews.timeouts).

In production run one or more `manage.py run_scheduler` processes (several are safe: cron
firings are deduplicated by a database unique constraint, the outbox's rows are claimed with
SKIP LOCKED, and reaping twice is harmless). The embedded default runs the same loop in a
thread of `manage.py serve`.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from reviews.timeouts import decide_expired_reviews
from runs import ledger, outbox
from runs.health import beat_scheduler
from runs.services import reap_stuck_runs
from runs.triggers.cron import fire_due_cron_triggers

logger = logging.getLogger(__name__)

TICK_SECONDS = 10


def tick(now=None) -> None:
    reaped = reap_stuck_runs(now=now)
    if reaped:
        logger.warning("re-enqueued %d stuck run(s)", len(reaped))
    fire_due_cron_triggers(now)
    send_outbox(now)
    decide_expired_reviews(now)


def send_outbox(now=None) -> None:
    """What the broker refused (or may not have received) goes again, every
    OUTBOX_RETRY_SECONDS: within seconds of the broker's return."""
    sent = outbox.send_outbox(now=now)
    if sent:
        logger.info("outbox: sent %d message(s) again", sent)


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
    next_tick = next_send = 0.0

    def heartbeat() -> None:
        """/readyz reads it (runs.health): a scheduler that stops beating is not ready."""
        beat_scheduler(interval_seconds=interval)

    while not stop.is_set():
        _safely(seal_ledger)
        now = time.monotonic()
        if now >= next_tick:
            next_tick = now + interval
            next_send = now + settings.OUTBOX_RETRY_SECONDS
            _safely(tick)  # it sends the outbox too
            _safely(heartbeat)
        elif now >= next_send:
            next_send = now + settings.OUTBOX_RETRY_SECONDS
            _safely(send_outbox)
        stop.wait(
            min(settings.LEDGER_SEAL_INTERVAL_SECONDS, settings.OUTBOX_RETRY_SECONDS, interval)
        )


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
