"""Dramatiq actors: each loads ids and hands over to the engine or a service."""

import dramatiq

from runs import engine


@dramatiq.actor(queue_name="runs", max_retries=5, min_backoff=1000, max_backoff=60000)
def execute_run(run_id: int) -> None:
    engine.drive(run_id)


@dramatiq.actor(queue_name="runs", max_retries=5, min_backoff=1000, max_backoff=60000)
def resume_run(run_id: int) -> None:
    """Continue a run after its review was approved."""
    engine.drive(run_id)


@dramatiq.actor(queue_name="maintenance", max_retries=0)
def reap_stuck_runs() -> None:
    from runs.services import reap_stuck_runs as reap

    reap()
