"""Dramatiq actors: each loads ids and hands over to the engine or a service.

Each actor imports what it runs inside its body (HackSoft's advice for actors): runs.dispatch
sends these actors' messages from inside the write path, so this module imports nothing of
ours at load time and the engine and services can import dispatch without a cycle.
"""

import dramatiq


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

    deliver(
        endpoint_id=endpoint_id,
        run_id=run_id,
        delivery_id=delivery_id,
        event_type=event_type,
        body=body,
        attempt=attempt,
    )
