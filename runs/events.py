"""Appending to a run's hash-chained event log. The only code that creates RunEvents."""

from contextlib import nullcontext

from django.db import connection, transaction
from django.utils import timezone

from rapidfolio import rows
from runs.integrity import GENESIS_HASH, event_hash
from runs.models import Run, RunEvent


def append_event(
    run: Run,
    type: str,
    *,
    actor: str = "",
    data: dict | None = None,
    chain: "EventChain | None" = None,
) -> RunEvent:
    """Append one event to the run's chain, under the run's row lock.

    Terminal runs still take events (webhook deliveries, retries): the lock is a SELECT ... FOR
    UPDATE, which the terminal-run trigger (an UPDATE trigger) does not refuse.

    With `chain` (a caller that holds the row lock and read the chain head with it), the event
    is only computed here and inserted by `chain.flush()` with the others of the transaction.
    """
    if chain is not None:
        return chain.append(type, actor=actor, data=data or {})
    data = data or {}
    with in_transaction():
        sequence, prev_hash = _lock_chain_head(run.pk)
        chain = EventChain(run, next_sequence=sequence, prev_hash=prev_hash)
        event = chain.append(type, actor=actor, data=data)
        chain.flush()
        return event


class EventChain:
    """A run's chain while the caller holds the run's row lock in its transaction.

    The next sequence and the previous hash are kept in memory, so appending costs no query;
    `flush()` inserts the transaction's events in one statement, before it commits. Hashes are
    computed in sequence exactly as `append_event` computes them one by one.
    """

    def __init__(self, run: Run, *, next_sequence: int, prev_hash: str):
        self.run = run
        self.next_sequence = next_sequence
        self.prev_hash = prev_hash
        self.pending: list[RunEvent] = []

    @classmethod
    def new_run(cls, run: Run) -> "EventChain":
        """The chain of a run inserted in the current transaction: nobody else can see it yet."""
        return cls(run, next_sequence=1, prev_hash=GENESIS_HASH)

    def append(self, type: str, *, actor: str, data: dict) -> RunEvent:
        created_at = timezone.now()
        event = RunEvent(
            run_id=self.run.pk,
            sequence=self.next_sequence,
            type=type,
            actor=actor,
            data=data,
            created_at=created_at,
            prev_hash=self.prev_hash,
            hash=event_hash(
                prev_hash=self.prev_hash,
                run_public_id=self.run.public_id,
                sequence=self.next_sequence,
                type=type,
                actor=actor,
                data=data,
                created_at=created_at,
            ),
        )
        self.pending.append(event)
        self.next_sequence += 1
        self.prev_hash = event.hash
        return event

    def flush(self) -> None:
        rows.insert(self.pending, returning_pk=True)
        self.pending = []


def in_transaction():
    """A transaction, or the caller's one when there is one already.

    Joining the caller's transaction instead of opening a savepoint saves two round trips per
    event (the engine appends one per step); any error still rolls the caller's work back.
    """
    return nullcontext() if connection.in_atomic_block else transaction.atomic()


def chain_head_sql(run_column: str) -> str:
    """The last event's sequence and hash of the run in `run_column`, as chain_sequence and
    chain_hash: two scalar subqueries served by the (run, sequence) unique index."""
    events = RunEvent._meta.db_table
    last = f"(SELECT {{}} FROM {events} WHERE run_id = {run_column} ORDER BY sequence DESC LIMIT 1)"
    return f"{last.format('sequence')} AS chain_sequence, {last.format('hash')} AS chain_hash"


def chain_from_head(run: Run, last_sequence: int | None, last_hash: str | None) -> EventChain:
    if last_sequence is None:
        return EventChain.new_run(run)
    return EventChain(run, next_sequence=last_sequence + 1, prev_hash=last_hash)


def _lock_chain_head(run_pk: int) -> tuple[int, str]:
    """Lock the run's row and read its chain's next sequence and previous hash: one query."""
    sql = f"SELECT {chain_head_sql('%s')} FROM {Run._meta.db_table} WHERE id = %s"
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_pk, run_pk, run_pk])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return 1, GENESIS_HASH
    return row[0] + 1, row[1]
