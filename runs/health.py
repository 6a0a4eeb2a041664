"""The readiness checks that read the runs app's tables (rapidfolio.health serves them on
/readyz), and the scheduler's heartbeat they read.

- The scheduler (rapidfolio.scheduler: `run_scheduler`, or a thread of `serve` on the embedded
  default) beats every tick. Without a recent beat nothing reaps stuck runs, resends what the
  broker refused, fires cron triggers or decides expired reviews.
- The ledger's sealer drains runs_ledgerqueue every second; an event queued for longer than
  LEDGER_SEAL_MAX_DELAY_SECONDS means it has stopped (or refuses to sign: its log says why).
"""

import dataclasses
import os
import socket
from datetime import timedelta
from typing import ClassVar

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from health_check import HealthCheck
from health_check.exceptions import ServiceUnavailable

from runs.models import LedgerQueue, SchedulerHeartbeat

SCHEDULER = "scheduler"
# A beat may be this many ticks late before the scheduler counts as stopped (a slow tick: a
# long reap, a cron burst).
TICKS_OF_GRACE = 3


def beat_scheduler(*, interval_seconds: float, now=None) -> None:
    """Record that a scheduler is alive and ticks every `interval_seconds`."""
    SchedulerHeartbeat.objects.update_or_create(
        name=SCHEDULER,
        defaults={
            "beat_at": now or timezone.now(),
            "interval_seconds": interval_seconds,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
        },
    )


def heartbeat_age(now=None) -> tuple[SchedulerHeartbeat | None, timedelta | None]:
    beat = SchedulerHeartbeat.objects.filter(name=SCHEDULER).first()
    if beat is None:
        return None, None
    return beat, (now or timezone.now()) - beat.beat_at


def oldest_unsealed_event_age(now=None) -> timedelta | None:
    """How long the oldest event waiting for the sealer has waited (the queue's head, by its
    primary key), or None when nothing waits."""
    queued_at = (
        LedgerQueue.objects.order_by("id").values_list("event__created_at", flat=True).first()
    )
    return None if queued_at is None else (now or timezone.now()) - queued_at


@dataclasses.dataclass
class SchedulerRunning(HealthCheck):
    """The scheduler beat within SCHEDULER_HEARTBEAT_MAX_AGE_SECONDS (or three of its ticks,
    when it ticks slower than that allows)."""

    needs_database: ClassVar[bool] = True

    def run(self):
        try:
            beat, age = heartbeat_age()
        except DatabaseError as exc:
            raise ServiceUnavailable(f"cannot read the scheduler's heartbeat: {exc}") from exc
        if beat is None:
            raise ServiceUnavailable("no scheduler has ever run (manage.py run_scheduler)")
        allowed = max(
            settings.SCHEDULER_HEARTBEAT_MAX_AGE_SECONDS, TICKS_OF_GRACE * beat.interval_seconds
        )
        if age.total_seconds() > allowed:
            raise ServiceUnavailable(
                f"the scheduler last beat {age.total_seconds():.0f} s ago "
                f"(allowed {allowed:g} s; host {beat.host}, pid {beat.pid})"
            )


@dataclasses.dataclass
class LedgerSealing(HealthCheck):
    """No event has waited for the sealer longer than LEDGER_SEAL_MAX_DELAY_SECONDS."""

    needs_database: ClassVar[bool] = True

    def run(self):
        try:
            age = oldest_unsealed_event_age()
        except DatabaseError as exc:
            raise ServiceUnavailable(f"cannot read the ledger queue: {exc}") from exc
        allowed = settings.LEDGER_SEAL_MAX_DELAY_SECONDS
        if age is not None and age.total_seconds() > allowed:
            raise ServiceUnavailable(
                f"the sealer is behind: the oldest unsealed event has waited "
                f"{age.total_seconds():.0f} s (allowed {allowed:g} s)"
            )
