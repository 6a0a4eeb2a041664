"""The engine's transactions: lock the run, record, advance, commit; tool calls in between.

Pure nodes (condition, output, fail) run inside the transaction that records the previous tool
call, so a run costs few commits. Each transaction also costs few statements: one locks the run
and reads its event chain's head (runs.sql), and the run's writer inserts the steps and events
and updates the run together when the transaction's work is done.

Nothing is executed on facts the engine cannot authenticate (runs.engine.authenticity): the
run's row is checked whenever it is read whole (with what the same query reads), the committed
steps when they are loaded (one query more, and only for a run that has steps).
"""

import logging

from django.db import transaction
from django.utils import timezone

from procedures.models import Connection
from rapidfolio import log_context
from runs import dispatch, sql
from runs.engine import authenticity, registry, tools
from runs.engine.authenticity import Refusal
from runs.engine.context import NodeContext
from runs.engine.interpreter import CallTool, Execute, RunState, next_action
from runs.locks import run_execution_lock
from runs.models import FailureKind, Run, RunStatus, Step
from runs.writer import RunWriter

logger = logging.getLogger(__name__)

ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)


def drive(run_id: int) -> None:
    """Execute the run as far as it can go now. Safe to call again at any time.

    Every line logged meanwhile (tool calls, httpx, a failure's traceback) names the run and its
    procedure: they join the Dramatiq message's log scope, or one of the drive's own."""
    with log_context.scope(), run_execution_lock(run_id) as acquired:
        if not acquired:
            logger.info("run %s is being executed by another worker", run_id)
            return
        _drive(run_id)


def _drive(run_id: int) -> None:
    run: Run | None = None
    state: RunState | None = None
    outcome: tools.ToolOutcome | None = None
    while True:
        with transaction.atomic():
            locked = _lock(run_id, run)
            if locked is None:
                logger.warning("run %s does not exist; dropping its message", run_id)
                return
            writer, whole = locked
            run = writer.run
            refusal = None
            if whole is not None and run.status in ACTIVE:
                refusal = authenticity.header_refusal(run, whole.header_facts)
            if state is None:
                # The procedure as the row points at it now (read with the row, no query more).
                log_context.add(run=run.public_id, procedure=whole.header_facts.procedure)
                state, refusal = _load_state(run, whole.has_connections, refusal)
            call = _advance(NodeContext(run, state, writer), outcome, refusal)
            outcome = None
            writer.flush()
        if call is None:
            logger.info("run %s is %s", run.public_id, run.status)
            return
        if call.wait_seconds > 0:
            # A transient failure's backoff is not over (an early redelivery): come back later.
            with transaction.atomic():
                dispatch.enqueue_execution(run, delay_ms=int(call.wait_seconds * 1000))
            return
        outcome = tools.call(run, state, call.node_id)


def _lock(run_id: int, previous: Run | None) -> tuple[RunWriter, sql.LockedRun | None] | None:
    """The run's writer for this transaction: the run current and locked, with its event
    chain's head, in one query; and, when it read the whole row, what it read with it
    (whether its environment has integration connections, what authenticates the row).

    The first transaction of a drive reads the whole row and the version (immutable) with it.
    Within a drive only a cancellation can change the run meanwhile, so later transactions read
    its status, and the whole row again only when the status moved.
    """
    if previous is not None:
        found = sql.lock_status(run_id)
        if found is not None and found[0] == previous.status:
            return RunWriter(previous, found[1]), None
    locked = sql.lock_run(run_id)
    if locked is None:
        return None
    return RunWriter(locked.run, locked.head), locked


def _load_state(
    run: Run, has_connections: bool, refusal: Refusal | None
) -> tuple[RunState, Refusal | None]:
    """The committed steps the drive goes on from, checked, and the environment's connections;
    nothing when there is nothing to execute (a refused row, a run not pending or running)."""
    if refusal is not None or run.status not in ACTIVE:
        return RunState(), refusal
    # A pending run has no steps yet: its first step is recorded in the transaction that moves
    # it to running.
    steps = (
        []
        if run.status == RunStatus.PENDING
        else list(Step.objects.filter(run_id=run.pk).order_by("sequence"))
    )
    refusal = authenticity.steps_refusal(run, steps) if steps else None
    if refusal is not None:
        return RunState(steps=steps), refusal
    connections = Connection.objects.filter(environment=run.environment) if has_connections else []
    state = RunState(
        steps=steps,
        definition=run.version.definition,
        connections={connection.integration: connection for connection in connections},
    )
    return state, refusal


def _advance(
    ctx: NodeContext, outcome: tools.ToolOutcome | None, refusal: Refusal | None
) -> CallTool | None:
    """One transaction's work: record the tool call just made, then (unless a fact it would act
    on is refused) run the pure nodes up to the next tool call. Returns that call, or None when
    the run stops here."""
    run = ctx.run
    if outcome is not None:
        tools.record_outcome(ctx, outcome)
        if run.status == RunStatus.FAILED:
            return None
    if run.status not in ACTIVE:
        return None  # finished, cancelled, or waiting for a reviewer
    if refusal is not None:
        authenticity.refuse(ctx.writer, refusal)
        return None
    if run.status == RunStatus.PENDING:
        ctx.transition(RunStatus.RUNNING)
    while True:
        action = next_action(ctx.state, timezone.now())
        if isinstance(action, CallTool):
            return action
        if not isinstance(action, Execute):
            ctx.fail(action.step, FailureKind.PERMANENT, action.reason)
            return None
        node_ctx = ctx.at(action.node_id)
        handler = registry.handler_for(node_ctx.node["type"])
        if handler is None:
            reason = f"Node '{action.node_id}' has unknown type {node_ctx.node['type']}."
            ctx.fail(None, FailureKind.PERMANENT, reason)
            return None
        if not handler.execute(node_ctx):
            return None
