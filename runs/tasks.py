"""Dramatiq actors: each loads ids and hands over to the engine or a service.

Each actor imports what it runs inside its body (HackSoft's advice for actors): runs.dispatch
and the outbox's relay (runs.outbox) send these actors' messages from inside the write path, so
this module imports none of the apps at load time and the engine and services can import
dispatch without a cycle. A message the broker refused is kept in the outbox and sent again by
the scheduler; a message sent twice is harmless (see runs.outbox).

Each message's log lines carry its actor and id (rapidfolio.log_context.MessageContext); the
engine adds the run and procedure it drives, deliver_webhook those its delivery is about.
"""

import json
import logging

import dramatiq

from rapidfolio import log_context

logger = logging.getLogger(__name__)


@dramatiq.actor(queue_name="runs", max_retries=5, min_backoff=1000, max_backoff=60000)
def execute_run(run_id: int) -> None:
    from runs.engine import drive

    drive(run_id)


@dramatiq.actor(queue_name="runs", max_retries=5, min_backoff=1000, max_backoff=60000)
def resume_run(run_id: int) -> None:
    """Continue a run after its review was approved."""
    from runs.engine import drive

    drive(run_id)


@dramatiq.actor(queue_name="maintenance", max_retries=0)
def reap_stuck_runs() -> None:
    from runs.services import reap_stuck_runs as reap

    reap()


# Dramatiq retries only a crash (the database unreachable); failed HTTP attempts are
# rescheduled by runs.webhooks with their own backoff.
@dramatiq.actor(queue_name="webhooks", max_retries=3, min_backoff=1000, max_backoff=60000)
def deliver_webhook(
    endpoint_id: int, run_id: int, delivery_id: str, event_type: str, body: str, attempt: int
) -> None:
    """One delivery attempt; runs.webhooks schedules the next one itself, with backoff."""
    from runs.webhooks import deliver

    with log_context.scope():
        log_context.add(delivery=delivery_id, **run_named_in(body))
        delivered = deliver(
            endpoint_id=endpoint_id,
            run_id=run_id,
            delivery_id=delivery_id,
            event_type=event_type,
            body=body,
            attempt=attempt,
        )
        outcome = "delivered" if delivered else "not delivered (recorded on the run)"
        logger.info("webhook %s attempt %d: %s", event_type, attempt, outcome)


def run_named_in(body: str) -> dict[str, str]:
    """The run and procedure a delivery is about, for its log lines: read from the body we
    built (runs.webhooks documents it), not from the database."""
    try:
        run = json.loads(body)["data"]["run"]
        return {"run": run["id"], "procedure": run["procedure"]["id"]}
    except (ValueError, KeyError, TypeError):
        return {}
