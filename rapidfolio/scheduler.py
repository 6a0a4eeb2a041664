"""Periodic work: re-enqueue stuck runs and fire due cron triggers.

In production run one or more `manage.py run_scheduler` processes (several are safe: cron
firings are deduplicated by a database unique constraint, and reaping twice is harmless). The
embedded default runs the same loop in a thread of `manage.py serve`.
"""

import logging
import threading

from django.db import close_old_connections

from runs.services import reap_stuck_runs
from runs.triggers.cron import fire_due_cron_triggers

logger = logging.getLogger(__name__)

TICK_SECONDS = 10


def tick() -> None:
    reaped = reap_stuck_runs()
    if reaped:
        logger.warning("re-enqueued %d stuck run(s)", len(reaped))
    fire_due_cron_triggers()


def run_forever(stop: threading.Event | None = None, interval: float = TICK_SECONDS) -> None:
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            tick()
        except Exception:  # noqa: BLE001 — one bad tick must not stop the scheduler
            logger.exception("scheduler tick failed")
        finally:
            close_old_connections()
        stop.wait(interval)


def start_in_thread() -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(stop,), name="scheduler", daemon=True).start()
    return stop
