"""The one write path of a run's record.

Everything that writes a run, its steps, its hash-chained events, its lease and its status goes
through a `RunWriter`, inside one transaction that holds the run's row lock:

    with transaction.atomic():
        writer = RunWriter.lock(run)            # the row lock and the chain's head: one query
        step = writer.add_step(node_id=..., ...)  # also appends its step.recorded event
        writer.append_event("review.decided", actor=..., data=...)
        writer.transition(RunStatus.FAILED, actor=..., failed_step=step, ...)
        writer.flush()                          # steps, then the run's row, then the events

Nothing is written before `flush()`: the steps go in one INSERT, the run's changed columns in
one UPDATE (however many transitions and lease moves the transaction made) and the events in
one INSERT, through runs.sql. Events are hashed here as they are appended, in sequence, so the
chain is computed in exactly one place; the facts the engine acts on (the run's header, every
step) are tagged here too, with the key outside the database (runs.authenticity). The engine,
the services (start, cancel, retry), the review decisions of the reviews app and the webhook
deliveries all write through it; only review requests and decisions, which the reviews app
owns, are rows it writes itself, in the same transaction, each pinned by an event appended
here.
"""

from contextlib import nullcontext
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from procedures.run_listing import listing_of
from runs import dispatch, lifecycle, metrics, sql
from runs.authenticity import header_tag, step_tag
from runs.integrity import GENESIS_HASH, digest, event_hash, run_header, step_digest
from runs.models import Run, RunEvent, RunStatus, Step, StepStatus

STEP_RECORDED = "step.recorded"


class RunWriter:
    """A run's record while this transaction holds the run's row lock."""

    def __init__(self, run: Run, head: sql.ChainHead = sql.NO_EVENTS):
        self.run = run
        self.next_sequence = 1 if head.sequence is None else head.sequence + 1
        self.prev_hash = GENESIS_HASH if head.sequence is None else head.hash
        self._steps: list[Step] = []
        self._events: list[RunEvent] = []
        self._run_fields: set[str] = set()
        self._outbox: list = []

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, run: Run, *, actor: str) -> "RunWriter":
        """Insert a new, pending run and its run.created event (at `flush`). The run is this
        transaction's own: nobody else sees it, so its empty chain needs no locking read."""
        if run.status != RunStatus.PENDING:  # the model's default: only lifecycle moves it
            raise ValueError(f"A new run starts pending, not {run.status}.")
        now = run.created_at
        # If no worker picks the run up by then, the reaper enqueues it again.
        run.lease_expires_at = now + timedelta(seconds=settings.RUN_LEASE_SECONDS)
        set_listing(run)  # in the same INSERT: the start path has no statement to spare
        sql.insert([run], returning_pk=True)
        writer = cls(run)
        header = run_header(run)
        tag = header_tag(run.public_id, digest(header))
        writer.append_event("run.created", actor=actor, data={"header": header, "tag": tag})
        metrics.run_created(run)  # once committed
        return writer

    @classmethod
    def lock(cls, run: Run | int) -> "RunWriter":
        """Lock the run's row and read it whole, current, with its chain's head (one query).
        Must be called inside a transaction."""
        locked = sql.lock_run(run if isinstance(run, int) else run.pk)
        if locked is None:
            raise Run.DoesNotExist(f"Run {run} does not exist.")
        return cls(locked.run, locked.head)

    @classmethod
    def lock_behind_others(cls, run: Run | int) -> "RunWriter":
        """`lock`, for a writer that may queue behind another transaction that appends events
        without changing the run's row (one approval of a quorum, then the next). Under READ
        COMMITTED the statement that waits for a row lock reads everything but that row as of
        when it started, so `lock`'s own statement would read the chain's head from before the
        other's events; here the row lock is taken first, and the head read after it."""
        run_id = run if isinstance(run, int) else run.pk
        list(Run.objects.select_for_update().filter(pk=run_id).values_list("pk", flat=True))
        return cls.lock(run_id)

    # --- recording ----------------------------------------------------------------------------
    def append_event(self, type: str, *, actor: str, data: dict | None = None) -> RunEvent:
        data = data or {}
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
        self._events.append(event)
        self.next_sequence += 1
        self.prev_hash = event.hash
        return event

    def add_step(self, *, sequence: int, actor: str, **fields) -> Step:
        """Record one node execution at `sequence` and the event that pins its content, with
        the tag that authenticates it (runs.authenticity)."""
        now = timezone.now()
        fields.setdefault("started_at", now)
        fields.setdefault("finished_at", now)
        fields.setdefault("status", StepStatus.SUCCEEDED)
        step = Step(run_id=self.run.pk, sequence=sequence, **fields)
        self._steps.append(step)
        sha256 = step_digest(step)
        self.append_event(
            STEP_RECORDED,
            actor=actor,
            data={
                "step": step.sequence,
                "node": step.node_id,
                "status": step.status,
                "attempt": step.attempt,
                "sha256": sha256,
                "tag": step_tag(self.run.public_id, step.sequence, sha256),
            },
        )
        return step

    def transition(self, to_status: str, *, actor: str, **details) -> None:
        """Move the run (lifecycle.apply checks the table) and append its status event; the
        outbound webhooks of the new status are sent once the transaction commits."""
        fields, data = lifecycle.apply(self.run, to_status, now=timezone.now(), **details)
        self._run_fields.update(fields)
        self.append_event("run.status_changed", actor=actor, data=data)
        metrics.run_transitioned(self.run, to_status)  # once committed
        if lifecycle.notifies(to_status):
            dispatch.deliver_webhooks_after_commit(self.run, to_status)

    def move_lease(self, expires_at) -> None:
        """Push the reaper's deadline for a running run; written once, at `flush`."""
        self.run.lease_expires_at = expires_at
        self._run_fields.add("lease_expires_at")

    @property
    def run_written(self) -> bool:
        """Whether this transaction changes the run's row (a transition or a lease move)."""
        return bool(self._run_fields)

    def add_outbox_message(self, message) -> None:
        """The run's message to the worker (runs.dispatch), written with the record at `flush`:
        the same transaction, and on PostgreSQL the same statement."""
        self._outbox.append(message)

    def flush(self) -> None:
        """Write what was recorded: the steps, the run's changed columns, the events and the
        outbox message, in one statement on PostgreSQL (runs.sql.write)."""
        sql.write(
            steps=self._steps,
            run=self.run,
            run_fields=tuple(sorted(self._run_fields)),
            events=self._events,
            rows=[self._outbox],
        )
        if self._steps:
            metrics.steps_recorded(self._steps)  # once committed
        self._steps, self._events, self._run_fields, self._outbox = [], [], set(), []


def set_listing(run: Run) -> None:
    """Fill the run's listing columns (what the Runs list shows and searches) from its version's
    definition and its inputs; runs.integrity recomputes them the same way."""
    listing = listing_of(run.version.definition, run.inputs)
    run.reference_values = listing.references
    run.search_text = listing.search_text
    run.amount_minor = listing.amount_minor
    run.amount_currency = listing.amount_currency


def transition(run: Run, to_status: str, *, actor: str, **details) -> Run:
    """Move `run` to `to_status` in a transaction of its own (or the caller's), or raise
    IllegalTransition. Returns the locked, updated run; `run` itself is updated too."""
    with in_transaction():
        # Cancels and retries may queue behind a webhook delivery's event-only append.
        writer = RunWriter.lock_behind_others(run)
        writer.transition(to_status, actor=actor, **details)
        writer.flush()
    lifecycle.copy_state(writer.run, run)
    return writer.run


def append_event(run: Run, type: str, *, actor: str, data: dict | None = None) -> RunEvent:
    """Append one event to a run's chain in a transaction of its own (or the caller's).
    Terminal runs still take events (webhook deliveries, retries): the row lock is a SELECT
    ... FOR UPDATE, which the terminal-run trigger (an UPDATE trigger) does not refuse."""
    with in_transaction():
        # Deliveries to several endpoints, and retries, append to one run at the same time.
        writer = RunWriter.lock_behind_others(run)
        event = writer.append_event(type, actor=actor, data=data)
        writer.flush()
    return event


def in_transaction():
    """A transaction, or the caller's one when there is one already.

    Joining the caller's transaction instead of opening a savepoint saves two round trips; any
    error still rolls the caller's work back.
    """
    return nullcontext() if connection.in_atomic_block else transaction.atomic()
