"""Appending to a run's hash-chained event log. The only code that creates RunEvents."""

from django.db import transaction
from django.utils import timezone

from runs.integrity import GENESIS_HASH, event_hash
from runs.models import Run, RunEvent


def append_event(run: Run, type: str, *, actor: str = "", data: dict | None = None) -> RunEvent:
    """Append one event to the run's chain, under the run's row lock.

    Terminal runs still take events (webhook deliveries, retries): the lock is a SELECT ... FOR
    UPDATE, which the terminal-run trigger (an UPDATE trigger) does not refuse.
    """
    data = data or {}
    with transaction.atomic():
        list(Run.objects.select_for_update().filter(pk=run.pk).values_list("pk", flat=True))
        last = (
            RunEvent.objects.filter(run_id=run.pk)
            .order_by("-sequence")
            .values_list("sequence", "hash")
            .first()
        )
        sequence, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        created_at = timezone.now()
        return RunEvent.objects.create(
            run_id=run.pk,
            sequence=sequence,
            type=type,
            actor=actor,
            data=data,
            created_at=created_at,
            prev_hash=prev_hash,
            hash=event_hash(
                prev_hash=prev_hash,
                run_public_id=run.public_id,
                sequence=sequence,
                type=type,
                actor=actor,
                data=data,
                created_at=created_at,
            ),
        )
