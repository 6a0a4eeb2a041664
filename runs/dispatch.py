"""Where messages to the workers are sent: always once the current transaction commits, and
never lost to a broker outage.

A message sent before its commit could reach a worker that does not yet see the run (or sees
a transaction that is later rolled back); every send here goes through `on_commit`, which runs
the send at once when there is no transaction.

What the broker may not hold is kept in the outbox (runs.outbox_models), and sent again by its
relay (runs.outbox), which the scheduler runs every few seconds:

- The message that makes a run executable (its start, its approval) is inserted there in that
  same transaction: one INSERT in a transaction that writes anyway, so a crash between the
  commit and the send loses nothing. The send is not confirmed by a write, which would cost
  a commit per run: the row stays until the relay finds that the run has moved on.
- A send the broker refuses is logged (WARNING, with the run) and never raised: what was
  committed stands, and its caller answers as it would have (a 202, the run page). The row is
  made due, or written for a message that had none (a delayed run message, a webhook
  delivery), and the relay sends it at its next pass once the broker is back.
"""

import json
import logging
import time
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from rapidfolio import ids
from rapidfolio.public_url import base_url
from runs import outbox, sql
from runs.models import OutboxActor, OutboxMessage, Run, RunStatus, WebhookEndpoint

logger = logging.getLogger(__name__)

EVENT_FOR_STATUS = {
    RunStatus.COMPLETED: WebhookEndpoint.EventType.RUN_COMPLETED,
    RunStatus.FAILED: WebhookEndpoint.EventType.RUN_FAILED,
    RunStatus.AWAITING_REVIEW: WebhookEndpoint.EventType.RUN_AWAITING_REVIEW,
    RunStatus.CANCELLED: WebhookEndpoint.EventType.RUN_CANCELLED,
}


# --- executing runs ---------------------------------------------------------------------------
def enqueue_execution(
    run: Run | int,
    *,
    delay_ms: int | None = None,
    resume: bool = False,
    after_event: int | None = None,
    writer=None,
) -> None:
    """Send the run to the worker once the current transaction commits.

    An immediate send is written to the outbox first, in the caller's transaction (with the
    run's last event: `after_event` when the caller knows it, else read here). A delayed send
    (the engine waiting out a transient failure's backoff, in a transaction that writes
    nothing) is written there only if the broker refuses it: the run's lease covers a crash
    before it, and writing it first would cost the engine a commit. Given the run's `writer`
    (a RunWriter not yet flushed), the outbox row is written with its record.
    """
    run_id = run if isinstance(run, int) else run.pk
    actor = (OutboxActor.RESUME_RUN if resume else OutboxActor.EXECUTE_RUN).value
    if delay_ms:
        transaction.on_commit(partial(_send_or_keep, actor, run, [run_id], delay_ms=delay_ms))
        return
    now = timezone.now()
    message = OutboxMessage(
        actor=actor,
        run_id=run_id,
        args=[run_id],
        after_event=outbox.last_event(run_id) if after_event is None else after_event,
        created_at=now,
        next_attempt_at=now + outbox.resend_after(),
    )
    if writer is not None:
        writer.add_outbox_message(message)  # written with the run's record, at its flush
    else:
        sql.insert_outbox_message(message)
    transaction.on_commit(partial(_send_or_mark_due, message, run))


# --- sending ----------------------------------------------------------------------------------
def _send_or_mark_due(message: OutboxMessage, run: Run | int) -> None:
    """After the commit: send the outbox's message; if refused, make it due at once."""
    error = outbox.send(message.actor, message.args)
    if error is None:
        return
    outbox.log_refusal(message.actor, run, error)
    _record(
        run,
        lambda: OutboxMessage.objects.filter(pk=message.pk).update(
            next_attempt_at=timezone.now(), last_error=error
        ),
    )


def _send_or_keep(actor: str, run: Run | int, args: list, *, delay_ms: int = 0) -> None:
    """After the commit: send a message that has no outbox row; if refused, write one, due
    when the message was meant to arrive."""
    error = outbox.send(actor, args, delay_ms)
    if error is None:
        return
    outbox.log_refusal(actor, run, error)
    run_id = run if isinstance(run, int) else run.pk
    now = timezone.now()
    _record(
        run,
        lambda: OutboxMessage.objects.create(
            actor=actor,
            run_id=run_id,
            args=list(args),
            after_event=outbox.last_event(run_id) if actor in outbox.RUN_ACTORS else None,
            created_at=now,
            next_attempt_at=now + timedelta(milliseconds=delay_ms or 0),
            last_error=error,
        ),
    )


def _record(run: Run | int, write) -> None:
    try:
        write()
    except Exception:  # noqa: BLE001 — the database too: nothing more to do here
        logger.exception(
            "outbox: could not record the refused message for run %s; a run is re-sent by "
            "the reaper when its lease runs out, a webhook delivery is lost",
            outbox.public_id(run),
        )


# --- outbound webhooks ------------------------------------------------------------------------
def deliver_webhooks_after_commit(run: Run, status: str) -> None:
    """Once the transition to `status` is committed, send its deliveries (runs.webhooks)."""
    transaction.on_commit(
        partial(_deliveries_after_commit, run, status=status, environment=run.environment)
    )


def _deliveries_after_commit(run: Run, *, status: str, environment: str) -> None:
    # A refused send is kept in the outbox (send_delivery); anything else that fails here (the
    # database) must not fail the transition's caller either, a worker or an HTTP request:
    # the transition is committed.
    try:
        enqueue_deliveries(run_id=run.pk, status=status, environment=environment)
    except Exception:  # noqa: BLE001
        logger.exception("could not send the %s webhooks of run %s", status, run.public_id)


def run_payload(run: Run, status: str) -> dict:
    data = {
        "id": run.public_id,
        "url": f"{base_url()}{reverse('api:get_run', args=[run.public_id])}",
        "status": status,
        "procedure": {"id": run.procedure.public_id, "name": run.procedure.name},
        "version": run.version.number,
        "environment": run.environment,
    }
    if status == RunStatus.COMPLETED:
        data["output"] = run.output
    if status == RunStatus.FAILED:
        step = run.failed_step
        data["failure"] = {
            "reason": run.failure_reason,
            "kind": run.failure_kind,
            "step": {"sequence": step.sequence, "node_id": step.node_id} if step else None,
        }
    if run.outcome and status in (RunStatus.COMPLETED, RunStatus.FAILED):
        data["outcome"] = run.outcome  # a business answer (declined), not a technical failure
    return data


def enqueue_deliveries(*, run_id: int, status: str, environment: str | None = None) -> list[str]:
    """Send one delivery message per subscribed endpoint; returns the delivery ids.

    Called after every terminal or review transition, mostly where no endpoint is configured:
    given the run's environment, one small query settles that before the run is read. It reads
    the table itself each time (no cache), so an endpoint added a moment ago is never missed.
    """
    event_type = EVENT_FOR_STATUS.get(status)
    if event_type is None:
        return []
    if environment is not None and not sql.any_enabled_webhook_endpoint(environment):
        return []
    run = Run.objects.select_related("procedure", "version", "failed_step").get(pk=run_id)
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(
            enabled=True, environment=run.environment
        ).order_by("pk")
        if event_type in (endpoint.events or [])
    ]
    run_data = run_payload(run, status) if endpoints else None
    delivery_ids = []
    for endpoint in endpoints:
        delivery_id = ids.new_public_id("whd")
        body = json.dumps(
            {
                "id": delivery_id,
                "type": str(event_type),
                "created": int(time.time()),
                "data": {"run": run_data},
            },
            separators=(",", ":"),
            default=str,
        )
        send_delivery(endpoint.pk, run.pk, delivery_id, str(event_type), body, attempt=1)
        delivery_ids.append(delivery_id)
    return delivery_ids


def send_delivery(endpoint_id, run_id, delivery_id, event_type, body, *, attempt, delay_ms=0):
    """One delivery attempt's message (the next attempt's after a failed one, with backoff),
    kept in the outbox if the broker refuses it."""
    args = [endpoint_id, run_id, delivery_id, event_type, body, attempt]
    actor = OutboxActor.DELIVER_WEBHOOK.value
    transaction.on_commit(partial(_send_or_keep, actor, run_id, args, delay_ms=delay_ms))
