"""Appending to a run's hash-chained event log. The only code that creates RunEvents."""

from contextlib import nullcontext

from django.db import connection, transaction
from django.utils import timezone

from runs.integrity import GENESIS_HASH, event_hash
from runs.models import Run, RunEvent


def append_event(run: Run, type: str, *, actor: str = "", data: dict | None = None) -> RunEvent:
    """Append one event to the run's chain, under the run's row lock.

    Terminal runs still take events (webhook deliveries, retries): the lock is a SELECT ... FOR
    UPDATE, which the terminal-run trigger (an UPDATE trigger) does not refuse.
    """
    data = data or {}
    with in_transaction():
        sequence, prev_hash = _lock_chain_head(run.pk)
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


def in_transaction():
    """A transaction, or the caller's one when there is one already.

    Joining the caller's transaction instead of opening a savepoint saves two round trips per
    event (the engine appends one per step); any error still rolls the caller's work back.
    """
    return nullcontext() if connection.in_atomic_block else transaction.atomic()


def _lock_chain_head(run_pk: int) -> tuple[int, str]:
    """Lock the run's row and read its chain's next sequence and previous hash: one query."""
    events = RunEvent._meta.db_table
    last = f"(SELECT {{}} FROM {events} WHERE run_id = %s ORDER BY sequence DESC LIMIT 1)"
    sql = (
        f"SELECT {last.format('sequence')}, {last.format('hash')} "
        f"FROM {Run._meta.db_table} WHERE id = %s"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_pk, run_pk, run_pk])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return 1, GENESIS_HASH
    return row[0] + 1, row[1]
