"""Where messages to the workers are sent: always once the current transaction commits.

A message sent before its commit could reach a worker that does not yet see the run (or sees
a transaction that is later rolled back); every send here goes through `on_commit`, which runs
the send at once when there is no transaction.
"""

import json
import time
from functools import partial

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from rapidfolio import ids
from runs import sql
from runs.models import Run, RunStatus, WebhookEndpoint
from runs.tasks import deliver_webhook, execute_run, resume_run

EVENT_FOR_STATUS = {
    RunStatus.COMPLETED: WebhookEndpoint.EventType.RUN_COMPLETED,
    RunStatus.FAILED: WebhookEndpoint.EventType.RUN_FAILED,
    RunStatus.AWAITING_REVIEW: WebhookEndpoint.EventType.RUN_AWAITING_REVIEW,
    RunStatus.CANCELLED: WebhookEndpoint.EventType.RUN_CANCELLED,
}


# --- executing runs ---------------------------------------------------------------------------
def enqueue_execution(run: Run | int, *, delay_ms: int | None = None, resume: bool = False):
    """Send the run to the worker once the current transaction commits."""
    run_id = run if isinstance(run, int) else run.pk
    actor = resume_run if resume else execute_run

    def send():
        if delay_ms:
            actor.send_with_options(args=(run_id,), delay=delay_ms)
        else:
            actor.send(run_id)

    transaction.on_commit(send)


def resend_execution(run_id: int) -> None:
    """Send a run that is already committed (the reaper's re-enqueue) now: there is no write
    of this transaction for the worker to wait for."""
    execute_run.send(run_id)


# --- outbound webhooks ------------------------------------------------------------------------
def deliver_webhooks_after_commit(run: Run, status: str) -> None:
    """Once the transition to `status` is committed, send its deliveries (runs.webhooks)."""
    transaction.on_commit(
        partial(enqueue_deliveries, run_id=run.pk, status=status, environment=run.environment)
    )


def run_payload(run: Run, status: str) -> dict:
    data = {
        "id": run.public_id,
        "url": f"{settings.PUBLIC_BASE_URL}{reverse('api:get_run', args=[run.public_id])}",
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
    """One delivery attempt's message (the next attempt's after a failed one, with backoff)."""
    args = (endpoint_id, run_id, delivery_id, event_type, body, attempt)
    transaction.on_commit(
        partial(deliver_webhook.send_with_options, args=args, delay=delay_ms or None)
    )
