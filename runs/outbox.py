"""The outbox's relay: what the scheduler and the reaper send again (runs.outbox_models).

runs.dispatch writes a row for every message the broker may not hold: the message that makes
a run executable (its start, its approval), in that same transaction, and any message the
broker refused, when it refused. This module sends them again:

- `send_outbox` (the scheduler, every OUTBOX_RETRY_SECONDS) sends what is due. A run message
  goes again while its run has not moved on (no worker has acted on it): first
  OUTBOX_RESEND_AFTER_SECONDS after the send at commit, then twice as long after each send,
  up to OUTBOX_MAX_BACKOFF_SECONDS. A webhook delivery goes once: its row is deleted when the
  broker takes it (runs.webhooks schedules the next attempts itself). A row whose run has moved
  on is deleted when it comes due. A pass stops at the first refusal: the broker is down, and
  one attempt per pass is how the relay notices that it is back.
- `resend_stuck_runs` (the reaper: runs whose lease ran out) goes through the same rows, so a
  stuck run is sent once per backoff step, not once per tick.

A duplicate is harmless: one worker at a time drives a run (runs.locks) and it resumes after
its last committed step; a webhook delivery keeps its id.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.utils import timezone

from runs.models import OutboxActor, OutboxMessage, Run, RunEvent, RunStatus
from runs.tasks import deliver_webhook, execute_run, resume_run

logger = logging.getLogger(__name__)

ACTORS = {
    OutboxActor.EXECUTE_RUN.value: execute_run,
    OutboxActor.RESUME_RUN.value: resume_run,
    OutboxActor.DELIVER_WEBHOOK.value: deliver_webhook,
}
RUN_ACTORS = (OutboxActor.EXECUTE_RUN.value, OutboxActor.RESUME_RUN.value)
ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)
# runs.webhooks appends these, also to a run whose resume message is still unsent: they say
# nothing about a worker having acted on the run.
WEBHOOK_DELIVERY_EVENT = "webhook.delivery"
ERROR_CHARS = 500
BATCH = 500


# --- sending one message ------------------------------------------------------------------------
def send(actor: str, args, delay_ms: int | None = None) -> str | None:
    """Hand one message to the broker; the broker's error, as text, if it refused it."""
    try:
        ACTORS[actor].send_with_options(args=tuple(args), delay=delay_ms or None)
    except Exception as exc:  # noqa: BLE001 — whatever the broker's client raises
        # Callers send after a commit: what was committed stands, and must be answered as such.
        return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
    return None


def log_refusal(actor: str, run: Run | int, error: str) -> None:
    logger.warning(
        "broker refused %s for run %s (%s); the scheduler sends it again",
        actor,
        public_id(run),
        error,
    )


def public_id(run: Run | int) -> str:
    if isinstance(run, Run):
        return run.public_id
    try:
        return Run.objects.filter(pk=run).values_list("public_id", flat=True).first() or f"#{run}"
    except Exception:  # noqa: BLE001 — only for a log line, when the database fails too
        return f"#{run}"


# --- the scheduler's pass -----------------------------------------------------------------------
def send_outbox(*, now=None, limit: int = BATCH) -> int:
    """Send the messages that are due and delete those whose work is done; returns how many
    reached the broker."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            due = OutboxMessage.objects.select_for_update(skip_locked=True).filter(
                next_attempt_at__lte=now
            )
            rows = list(_with_progress(due).order_by("next_attempt_at", "pk")[:limit])
            finished = [row.pk for row in rows if _done(row)]
            sent, refused = _send_rows(
                [row for row in rows if row.pk not in finished], finished, now
            )
        total += len(sent)
        if refused or len(rows) < limit:
            return total


# --- the reaper -------------------------------------------------------------------------------
def resend_stuck_runs(stuck: QuerySet, *, now, limit: int = BATCH) -> list[int]:
    """Send again the `stuck` runs, each at most once per backoff step: a run whose message
    waits for its next attempt is left to it, the others are sent now. Returns the ids of the
    runs sent, oldest lease first."""
    waiting = OutboxMessage.objects.filter(
        run_id=OuterRef("pk"), actor__in=RUN_ACTORS, next_attempt_at__gt=now
    )
    run_ids = list(
        stuck.filter(~Exists(waiting))
        .order_by("lease_expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not run_ids:
        return []
    with transaction.atomic():
        rows = list(
            _with_progress(
                OutboxMessage.objects.select_for_update().filter(
                    run_id__in=run_ids, actor__in=RUN_ACTORS
                )
            )
        )
        finished = [row.pk for row in rows if _done(row)]
        open_rows = [row for row in rows if row.pk not in finished]
        covered = {row.run_id for row in open_rows}
        heads = last_events([pk for pk in run_ids if pk not in covered])
        new = OutboxMessage.objects.bulk_create(
            OutboxMessage(
                actor=OutboxActor.EXECUTE_RUN.value,
                run_id=pk,
                args=[pk],
                after_event=heads.get(pk),
                created_at=now,
                next_attempt_at=now,
            )
            for pk in run_ids
            if pk not in covered
        )
        due = [row for row in open_rows if row.next_attempt_at <= now]
        sent, _ = _send_rows(due + new, finished, now)
    sent_runs = {row.run_id for row in sent}
    return [pk for pk in run_ids if pk in sent_runs]


def resend_active_runs(*, now=None, limit: int = BATCH) -> list[int]:
    """Send every pending or running run again now, whatever its lease and backoff; returns
    the ids of the runs sent.

    For a broker that holds nothing from before its process started: the embedded default's
    in-memory one, when `manage.py serve` starts. What `seed_demo` or the previous `serve`
    sent died with that process, and waiting for the reaper would leave those runs still for
    a lease (RUN_LEASE_SECONDS). A run waiting out a tool's retry backoff is sent too: its
    worker sees the backoff and schedules the attempt itself.
    """
    now = now or timezone.now()
    active = Run.objects.filter(status__in=ACTIVE)
    OutboxMessage.objects.filter(actor__in=RUN_ACTORS, run__in=active).update(next_attempt_at=now)
    sent = []
    while True:
        # Each pass sends up to `limit` runs, which then wait for their next backoff step: the
        # next pass takes the following ones.
        batch = resend_stuck_runs(active, now=now, limit=limit)
        sent += batch
        if len(batch) < limit:
            return sent


# --- both -------------------------------------------------------------------------------------
def _send_rows(rows: list[OutboxMessage], finished: list[int], now):
    """Send `rows` in order, and delete the `finished` ones and each webhook delivery that the
    broker took; a run message sent waits for its next backoff step. Returns (the rows sent,
    whether the broker refused one): a refusal ends the pass, the rest stay due."""
    finished = list(finished)
    sent, changed, refused = [], [], False
    for row in rows:
        error = send(row.actor, row.args)
        if error is not None:
            log_refusal(row.actor, row.run_id, error)
            row.last_error = error
            changed.append(row)
            refused = True
            break
        sent.append(row)
        if row.actor == OutboxActor.DELIVER_WEBHOOK:
            finished.append(row.pk)
            continue
        row.attempts += 1
        row.next_attempt_at = now + backoff(row.attempts)
        row.last_error = ""
        changed.append(row)
    if finished:
        OutboxMessage.objects.filter(pk__in=finished).delete()
    if changed:
        OutboxMessage.objects.bulk_update(changed, ["attempts", "next_attempt_at", "last_error"])
    return sent, refused


def resend_after() -> timedelta:
    """How long a run message sent at commit is given before the relay sends it again."""
    return timedelta(seconds=settings.OUTBOX_RESEND_AFTER_SECONDS)


def backoff(attempts: int) -> timedelta:
    """How long a run message waits after its `attempts`-th send by the relay or the reaper
    before it goes again: twice as long each time, from resend_after() up to the cap."""
    seconds = settings.OUTBOX_RESEND_AFTER_SECONDS * 2 ** min(attempts - 1, 32)
    return timedelta(seconds=min(seconds, settings.OUTBOX_MAX_BACKOFF_SECONDS))


def _with_progress(rows: QuerySet) -> QuerySet:
    """Each row with its run's status and whether the run has moved on since the message was
    written: two subqueries on unique indexes, and no join, so FOR UPDATE locks only the
    outbox's rows, never a run's."""
    later = RunEvent.objects.filter(
        run_id=OuterRef("run_id"), sequence__gt=OuterRef("after_event")
    ).exclude(type=WEBHOOK_DELIVERY_EVENT)
    status = Run.objects.filter(pk=OuterRef("run_id")).values("status")[:1]
    return rows.annotate(run_status=Subquery(status), moved_on=Exists(later))


def _done(row: OutboxMessage) -> bool:
    """A run message's work is done once a worker has acted on the run, or when there is
    nothing left to execute (finished, cancelled, waiting for a reviewer)."""
    return row.actor in RUN_ACTORS and (row.moved_on or row.run_status not in ACTIVE)


def last_event(run_id: int) -> int | None:
    return last_events([run_id]).get(run_id)


def last_events(run_ids: list[int]) -> dict[int, int | None]:
    """Each run's last event (its sequence): one subquery per run on the (run, sequence)
    index."""
    if not run_ids:
        return {}
    last = RunEvent.objects.filter(run_id=OuterRef("pk")).order_by("-sequence").values("sequence")
    runs = Run.objects.filter(pk__in=run_ids).annotate(last=Subquery(last[:1]))
    return dict(runs.values_list("pk", "last"))
