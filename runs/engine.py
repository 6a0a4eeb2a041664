"""The engine: interprets a procedure version's definition for one run.

`drive(run_id)` moves a run as far as it can go: it executes nodes one at a time, committing
every step, and stops at a human review, at the end, on failure, when the run is cancelled, or
while it waits to retry a transient tool error.

Crash safety rests on three rules:
- a tool call happens outside any transaction, and its step is committed right after it, so a
  worker killed mid-call has recorded nothing for that attempt;
- the next node is always derived from the committed steps, so a redelivered or reaped message
  resumes after the last finished step and never repeats one;
- the tool's idempotency key is derived from run, node, step position and attempt, so the
  unrecorded call of a killed worker is repeated with the same key and the integration
  (Stripe, the bank) answers it without acting twice.

Pure nodes (condition, output, fail) run inside the transaction that records the previous tool
call, so a run costs few commits. Each transaction also costs few statements: one locks the run
and reads its event chain's head, and the steps, the events and the run's update are written
together when the transaction's work is done (rapidfolio.rows: without the ORM's compilation,
which profiling showed to be most of a run's CPU).
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from procedures.expressions import ExpressionError, evaluate, resolve
from procedures.models import Connection, ProcedureVersion
from procedures.tools import ToolContext, ToolError, get_tool
from rapidfolio import rows
from runs import lifecycle
from runs.events import EventChain, append_event, chain_from_head, chain_head_sql
from runs.integrity import review_request_digest, step_digest
from runs.locks import run_execution_lock
from runs.models import FailureKind, Run, RunStatus, Step, StepStatus

logger = logging.getLogger(__name__)

ENGINE_ACTOR = "system:engine"
MAX_STEPS_PER_RUN = 1000
DEFAULT_RETRY = {"max_attempts": 3, "backoff_seconds": 2.0, "max_backoff_seconds": 60.0}
# The lease moves forward only once it has aged this much. A run's transactions follow each
# other within milliseconds, and moving the lease by a few milliseconds rewrote the run's row
# (a non-HOT update: the lease is indexed) in every transaction, two of a run's four updates of
# it; the reaper's deadline stays within this of "last progress + RUN_LEASE_SECONDS".
LEASE_REFRESH = timedelta(seconds=1)


@dataclass
class ToolOutcome:
    """What a tool call produced, waiting to be recorded."""

    node_id: str
    tool: str
    attempt: int
    input: dict
    idempotency_key: str
    started_at: object
    finished_at: object
    output: object = None
    request: str = ""
    response: str = ""
    error: ToolError | None = None


@dataclass
class RunState:
    """The committed step log of a run, as the engine needs it."""

    steps: list[Step] = field(default_factory=list)
    definition: dict = field(default_factory=dict)
    # The environment's integration connections, read once per drive.
    connections: dict = field(default_factory=dict)
    # Per transaction: the run's event chain (read with the row lock), the steps recorded but
    # not yet inserted, whether the run's row was written (by a transition), and whether a step
    # moved the lease forward in memory, to be saved once when the transaction ends.
    chain: EventChain | None = None
    unsaved_steps: list[Step] = field(default_factory=list)
    run_written: bool = False
    lease_dirty: bool = False

    def begin(self, chain: EventChain) -> None:
        self.chain = chain
        self.unsaved_steps = []
        self.run_written = False
        self.lease_dirty = False

    def save_steps(self) -> None:
        """Insert the steps recorded so far in this transaction (they get their pks)."""
        rows.insert(self.unsaved_steps, returning_pk=True)
        self.unsaved_steps = []

    def commit_work(self, run: Run) -> None:
        """Write what this transaction recorded: steps, the lease, then the events."""
        self.save_steps()
        if self.lease_dirty and not self.run_written and run.status == RunStatus.RUNNING:
            # Once per transaction, not per step: only the last value is ever visible.
            rows.update(run, ["lease_expires_at"])
        self.chain.flush()

    @property
    def next_sequence(self) -> int:
        return self.steps[-1].sequence + 1 if self.steps else 1

    def context(self, run: Run) -> dict:
        outputs = {}
        for step in self.steps:
            if step.status == StepStatus.SUCCEEDED:
                outputs[step.node_id] = {"output": step.output}
        return {"inputs": run.inputs, "steps": outputs}

    def failed_attempts_at_end(self, node_id: str) -> list[Step]:
        attempts = []
        for step in reversed(self.steps):
            if step.node_id != node_id or step.status != StepStatus.FAILED:
                break
            attempts.append(step)
        return attempts


def retry_policy(node: dict) -> dict:
    return {**DEFAULT_RETRY, **(node.get("retry") or {})}


def backoff_seconds(policy: dict, failed_attempt: int) -> float:
    return min(
        float(policy["max_backoff_seconds"]),
        float(policy["backoff_seconds"]) * (2 ** (failed_attempt - 1)),
    )


def idempotency_key(run: Run, node_id: str, sequence: int, attempt: int) -> str:
    return f"{run.public_id}-{node_id}-s{sequence}-a{attempt}"


def next_node_id(definition: dict, state: RunState) -> str | None:
    """The node to execute next, derived only from committed steps."""
    if not state.steps:
        return definition["start"]
    last = state.steps[-1]
    node = definition["nodes"][last.node_id]
    if last.status == StepStatus.FAILED:
        # A failed tool attempt: the same node again (the caller checks the retry budget).
        return last.node_id
    if node["type"] == "condition":
        return node["then"] if last.output else node["else"]
    if node["type"] in ("tool", "human_review"):
        return node["next"]
    return None  # output / fail end the run


def drive(run_id: int) -> None:
    """Execute the run as far as it can go now. Safe to call again at any time."""
    with run_execution_lock(run_id) as acquired:
        if not acquired:
            logger.info("run %s is being executed by another worker", run_id)
            return
        _drive(run_id)


def _drive(run_id: int) -> None:
    run: Run | None = None
    state: RunState | None = None
    outcome: ToolOutcome | None = None

    while True:
        with transaction.atomic():
            locked = _lock(run_id, run)
            if locked is None:
                logger.warning("run %s does not exist; dropping its message", run_id)
                return
            run = locked.run
            if state is None:
                state = _load_state(run, locked.has_connections)
            state.begin(locked.chain)
            tool_call = _advance(run, state, outcome)
            outcome = None
            state.commit_work(run)
        if tool_call is None:
            return
        node_id, wait_seconds = tool_call
        if wait_seconds > 0:
            # A transient failure's backoff is not over (an early redelivery): come back later.
            from runs.services import enqueue_execution

            with transaction.atomic():
                enqueue_execution(run, delay_ms=int(wait_seconds * 1000))
            return
        outcome = _call_tool(run, state, node_id)


def _lock_sql(columns: str) -> str:
    sql = (
        f"SELECT {columns}, {chain_head_sql(Run._meta.db_table + '.id')} "
        f"FROM {Run._meta.db_table} WHERE id = %s"
    )
    # FOR UPDATE locks only the run's row: never the version's or the procedure's, which every
    # run of the procedure shares (the subqueries read without locking).
    return sql + " FOR UPDATE" if connection.features.has_select_for_update else sql


def _full_lock_sql() -> str:
    runs, versions = Run._meta.db_table, ProcedureVersion._meta.db_table
    version = f"(SELECT {{0}} FROM {versions} WHERE id = {runs}.version_id)"
    # Whether the environment has any integration connection: mostly not (sandbox simulators),
    # and then they need no query of their own.
    has_connections = (
        f"EXISTS (SELECT 1 FROM {Connection._meta.db_table} WHERE environment = {runs}.environment)"
    )
    return _lock_sql(
        f"{rows.columns(Run, runs)}, {version.format('number')}, {version.format('definition')}, "
        f"{has_connections}"
    )


class Locked(NamedTuple):
    run: Run
    chain: EventChain
    # Read with the whole row only (None otherwise).
    has_connections: bool | None = None


def _lock(run_id: int, previous: Run | None) -> Locked | None:
    """The run, current and locked for this transaction, with its event chain's head: one query.

    The first transaction of a drive reads the whole row and the version (immutable) with it.
    Within a drive only a cancellation can change the run meanwhile, so later transactions read
    its status, and the whole row again only when the status moved.
    """
    with connection.cursor() as cursor:
        if previous is not None:
            cursor.execute(_lock_sql("status"), [run_id])
            row = cursor.fetchone()
            if row is not None and row[0] == previous.status:
                return Locked(previous, chain_from_head(previous, row[1], row[2]))
        cursor.execute(_full_lock_sql(), [run_id])
        row = cursor.fetchone()
    if row is None:
        return None
    run = rows.build(Run, row)
    version_number, version_definition, has_connections, last_sequence, last_hash = row[-5:]
    definition = ProcedureVersion._meta.get_field("definition")
    run.version = ProcedureVersion.from_db(
        connection.alias,
        ["id", "procedure_id", "number", "definition"],
        [
            run.version_id,
            run.procedure_id,
            version_number,
            definition.from_db_value(version_definition, None, connection),
        ],
    )
    return Locked(run, chain_from_head(run, last_sequence, last_hash), bool(has_connections))


def _load_state(run: Run, has_connections: bool) -> RunState:
    # A pending run has no steps yet: its first step is recorded in the transaction that moves
    # it to running.
    steps = (
        []
        if run.status == RunStatus.PENDING
        else list(Step.objects.filter(run_id=run.pk).order_by("sequence"))
    )
    connections = Connection.objects.filter(environment=run.environment) if has_connections else []
    return RunState(
        steps=steps,
        definition=run.version.definition,
        connections={connection.integration: connection for connection in connections},
    )


def _transition(run: Run, state: RunState, to_status: str, **kwargs) -> None:
    """lifecycle.transition for the engine: it holds the lock, and the run may point at a step
    recorded in this transaction, so the steps are inserted first."""
    state.save_steps()
    lifecycle.transition(
        run, to_status, actor=ENGINE_ACTOR, locked=True, chain=state.chain, **kwargs
    )
    state.run_written = True


def _advance(run: Run, state: RunState, outcome: ToolOutcome | None):
    """One transaction's work: record the tool call just made, then run the pure nodes up to
    the next tool call. Returns (tool node, wait) or None when the run stops here."""
    if outcome is not None:
        _record_tool_outcome(run, state, outcome, state.definition)
        if run.status == RunStatus.FAILED:
            return None
    if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        return None  # finished, cancelled, or waiting for a reviewer
    if run.status == RunStatus.PENDING:
        _transition(run, state, RunStatus.RUNNING)
    return _advance_pure_nodes(run, state, state.definition)


def _advance_pure_nodes(run: Run, state: RunState, definition: dict):
    """Run condition/output/fail nodes and stop at a review. Returns (tool node, wait) or None."""
    while True:
        if len(state.steps) >= MAX_STEPS_PER_RUN:
            _fail(
                run,
                state,
                None,
                FailureKind.PERMANENT,
                f"The run exceeded {MAX_STEPS_PER_RUN} steps; the procedure may loop.",
            )
            return None
        node_id = next_node_id(definition, state)
        if node_id is None:
            _fail(
                run,
                state,
                state.steps[-1] if state.steps else None,
                FailureKind.PERMANENT,
                "The procedure ended without reaching an output node.",
            )
            return None
        node = definition["nodes"][node_id]
        context = state.context(run)
        kind = node["type"]
        if kind == "tool":
            failed = state.failed_attempts_at_end(node_id)
            if failed:
                policy = retry_policy(node)
                ready_at = failed[0].finished_at + timedelta(
                    seconds=backoff_seconds(policy, failed[0].attempt)
                )
                wait = (ready_at - timezone.now()).total_seconds()
                return node_id, max(wait, 0)
            return node_id, 0
        if kind == "condition":
            try:
                result = bool(evaluate(node["expression"], context))
            except ExpressionError as exc:
                _fail_expression(run, state, node_id, kind, exc)
                return None
            _record_step(
                run, state, node_id, kind, input={"expression": node["expression"]}, output=result
            )
            continue
        if kind == "output":
            try:
                value = resolve(node.get("value"), context)
            except ExpressionError as exc:
                _fail_expression(run, state, node_id, kind, exc)
                return None
            _record_step(run, state, node_id, kind, input=node.get("value"), output=value)
            _transition(run, state, RunStatus.COMPLETED, output=value)
            return None
        if kind == "fail":
            reason = node.get("reason") or f"The procedure ended at fail node '{node_id}'."
            _fail_at_node(run, state, node_id, kind, input=None, reason=reason)
            return None
        if kind == "human_review":
            _request_review(run, state, node_id, node, context)
            return None
        _fail(run, state, None, FailureKind.PERMANENT, f"Node '{node_id}' has unknown type {kind}.")
        return None


def _call_tool(run: Run, state: RunState, node_id: str) -> ToolOutcome:
    node = state.definition["nodes"][node_id]
    attempt = len(state.failed_attempts_at_end(node_id)) + 1
    sequence = state.next_sequence
    key = idempotency_key(run, node_id, sequence, attempt)
    started_at = timezone.now()
    outcome = ToolOutcome(
        node_id=node_id,
        tool=node["tool"],
        attempt=attempt,
        input={},
        idempotency_key=key,
        started_at=started_at,
        finished_at=started_at,
    )
    tool = get_tool(node["tool"])
    try:
        outcome.input = resolve(node.get("input", {}), state.context(run))
        if tool is None:
            raise ToolError(f"Tool '{node['tool']}' is not installed.")
        connection = state.connections.get(tool.integration)
        context = ToolContext(
            run_public_id=run.public_id,
            node_id=node_id,
            attempt=attempt,
            environment=run.environment,
            idempotency_key=key,
            connection=connection,
        )
        result = tool.call(outcome.input, context)
        outcome.output, outcome.request, outcome.response = (
            result.output,
            result.request,
            result.response,
        )
    except ExpressionError as exc:
        outcome.error = ToolError(f"Input mapping of node '{node_id}' failed: {exc}")
    except ToolError as exc:
        outcome.error = exc
    except Exception as exc:  # noqa: BLE001 — a tool bug must fail the run, not the worker
        logger.exception("tool %s raised unexpectedly", node["tool"])
        outcome.error = ToolError(f"Tool '{node['tool']}' crashed: {type(exc).__name__}: {exc}")
    outcome.finished_at = timezone.now()
    return outcome


def _record_tool_outcome(run: Run, state: RunState, outcome: ToolOutcome, definition) -> None:
    """Commit what a tool call did, whatever happened to the run meanwhile (it happened)."""
    node = definition["nodes"][outcome.node_id]
    error = outcome.error
    step = _record_step(
        run,
        state,
        outcome.node_id,
        "tool",
        tool=outcome.tool,
        attempt=outcome.attempt,
        input=outcome.input,
        output=outcome.output,
        request=outcome.request or (error.request if error else ""),
        response=outcome.response or (error.response if error else ""),
        idempotency_key=outcome.idempotency_key,
        status=StepStatus.FAILED if error else StepStatus.SUCCEEDED,
        error=error.message if error else "",
        error_kind=error.kind if error else "",
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
    )
    if error is None or run.status != RunStatus.RUNNING:
        return
    policy = retry_policy(node)
    if error.kind == FailureKind.TRANSIENT and outcome.attempt < int(policy["max_attempts"]):
        # The next attempt is scheduled by _drive once it sees the backoff is not over; the
        # lease keeps the reaper away meanwhile.
        delay = backoff_seconds(policy, outcome.attempt)
        run.lease_expires_at = timezone.now() + timedelta(
            seconds=delay + settings.RUN_LEASE_SECONDS
        )
        rows.update(run, ["lease_expires_at"])
        state.run_written = True
        return
    if error.kind == FailureKind.TRANSIENT:
        reason = (
            f"Node '{outcome.node_id}' ({outcome.tool}) failed after {outcome.attempt} "
            f"attempts: {error.message}"
        )
    else:
        reason = f"Node '{outcome.node_id}' ({outcome.tool}) failed: {error.message}"
    _fail(run, state, step, error.kind, reason)


def _record_step(
    run: Run,
    state: RunState,
    node_id: str,
    node_type: str,
    *,
    input,
    output,
    status=StepStatus.SUCCEEDED,
    tool="",
    attempt=1,
    request="",
    response="",
    idempotency_key="",
    error="",
    error_kind="",
    started_at=None,
    finished_at=None,
) -> Step:
    now = timezone.now()
    step = Step(
        run_id=run.pk,
        sequence=state.next_sequence,
        node_id=node_id,
        node_type=node_type,
        tool=tool,
        status=status,
        attempt=attempt,
        input=input,
        output=output,
        request=request,
        response=response,
        idempotency_key=idempotency_key,
        error=error,
        error_kind=error_kind,
        started_at=started_at or now,
        finished_at=finished_at or now,
    )
    state.unsaved_steps.append(step)
    append_event(
        run,
        "step.recorded",
        actor=ENGINE_ACTOR,
        data={
            "step": step.sequence,
            "node": node_id,
            "status": status,
            "attempt": attempt,
            "sha256": step_digest(step),
        },
        chain=state.chain,
    )
    state.steps.append(step)
    if run.status == RunStatus.RUNNING and not state.run_written:
        # A transition that wrote the row in this transaction set the lease already.
        lease = now + timedelta(seconds=settings.RUN_LEASE_SECONDS)
        if run.lease_expires_at is None or lease - run.lease_expires_at >= LEASE_REFRESH:
            run.lease_expires_at = lease
            state.lease_dirty = True
    return step


def _fail_expression(run, state, node_id, node_type, exc: ExpressionError) -> None:
    reason = f"Expression `{exc.expression}` in node '{node_id}' failed: {exc.message}"
    _fail_at_node(
        run, state, node_id, node_type, input={"expression": exc.expression}, reason=reason
    )


def _fail_at_node(run, state, node_id, node_type, *, input, reason) -> None:
    """Record the node as a failed step (a permanent failure) and fail the run at it."""
    step = _record_step(
        run,
        state,
        node_id,
        node_type,
        input=input,
        output=None,
        status=StepStatus.FAILED,
        error=reason,
        error_kind=FailureKind.PERMANENT,
    )
    _fail(run, state, step, FailureKind.PERMANENT, reason)


def _fail(run, state, step, kind, reason) -> None:
    """Fail the run, naming the step it failed at (None when no step is to blame)."""
    _transition(run, state, RunStatus.FAILED, reason=reason, failure_kind=kind, failed_step=step)


def _request_review(run: Run, state: RunState, node_id: str, node: dict, context: dict) -> None:
    from reviews.models import ReviewRequest

    try:
        shown = resolve(node.get("show", {}), context)
    except ExpressionError as exc:
        _fail_expression(run, state, node_id, "human_review", exc)
        return
    overridable = [
        {"name": name, "schema": schema} for name, schema in (node.get("overridable") or {}).items()
    ]
    request = ReviewRequest.objects.create(
        run=run,
        node_id=node_id,
        step_sequence=state.next_sequence,
        title=node.get("title", "") or f"Review {run.procedure.name}",
        instructions=node.get("instructions", ""),
        shown_values=shown,
        overridable_fields=overridable,
        reviewer_group=node.get("reviewer_group", ""),
        created_at=timezone.now(),
    )
    append_event(
        run,
        "review.requested",
        actor=ENGINE_ACTOR,
        data={
            "review": request.public_id,
            "node": node_id,
            "sha256": review_request_digest(request),
        },
        chain=state.chain,
    )
    _transition(run, state, RunStatus.AWAITING_REVIEW)
