"""Calling an integration's tool, and the retry policy of transient errors.

A tool call happens outside any transaction (`call`), and what it did is recorded in the next
one (`record_outcome`), whatever happened to the run meanwhile: it happened.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from procedures.expressions import ExpressionError, resolve
from procedures.node_types import NodeType
from procedures.tools import ToolContext, ToolError, get_tool
from runs import metrics
from runs.models import FailureKind, Run, RunStatus, StepStatus

logger = logging.getLogger(__name__)

DEFAULT_RETRY = {"max_attempts": 3, "backoff_seconds": 2.0, "max_backoff_seconds": 60.0}


def retry_policy(node: dict) -> dict:
    return {**DEFAULT_RETRY, **(node.get("retry") or {})}


def backoff_seconds(policy: dict, failed_attempt: int) -> float:
    return min(
        float(policy["max_backoff_seconds"]),
        float(policy["backoff_seconds"]) * (2 ** (failed_attempt - 1)),
    )


def idempotency_key(run: Run, node_id: str, sequence: int, attempt: int) -> str:
    return f"{run.public_id}-{node_id}-s{sequence}-a{attempt}"


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


def call(run: Run, state, node_id: str) -> ToolOutcome:
    """Call the node's tool (outside any transaction); never raises for the tool's sake."""
    node = state.definition["nodes"][node_id]
    attempt = len(state.failed_attempts_at_end(node_id)) + 1
    key = idempotency_key(run, node_id, state.next_sequence, attempt)
    started_at = timezone.now()
    outcome = ToolOutcome(node_id, node["tool"], attempt, {}, key, started_at, started_at)
    tool = get_tool(node["tool"])
    try:
        outcome.input = resolve(node.get("input", {}), state.expression_context(run.inputs))
        if tool is None:
            raise ToolError(f"Tool '{node['tool']}' is not installed.")
        context = ToolContext(
            run_public_id=run.public_id,
            node_id=node_id,
            attempt=attempt,
            environment=run.environment,
            idempotency_key=key,
            connection=state.connections.get(tool.integration),
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
    metrics.tool_called(
        tool=outcome.tool,
        environment=run.environment,
        seconds=(outcome.finished_at - started_at).total_seconds(),
        error_kind=outcome.error.kind if outcome.error else "",
    )
    return outcome


def record_outcome(ctx, outcome: ToolOutcome) -> None:
    """Commit what a tool call did; then retry later, or fail the run, if it failed."""
    error = outcome.error
    step = ctx.at(outcome.node_id).record_step(
        NodeType.TOOL,
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
    if error is None or ctx.run.status != RunStatus.RUNNING:
        return
    policy = retry_policy(ctx.state.definition["nodes"][outcome.node_id])
    if error.kind == FailureKind.TRANSIENT and outcome.attempt < int(policy["max_attempts"]):
        # The next attempt is scheduled by the driver once it sees the backoff is not over;
        # the lease keeps the reaper away meanwhile.
        delay = backoff_seconds(policy, outcome.attempt)
        ctx.writer.move_lease(
            timezone.now() + timedelta(seconds=delay + settings.RUN_LEASE_SECONDS)
        )
        return
    where = f"Node '{outcome.node_id}' ({outcome.tool}) failed"
    if error.kind == FailureKind.TRANSIENT:
        reason = f"{where} after {outcome.attempt} attempts: {error.message}"
    else:
        reason = f"{where}: {error.message}"
    ctx.fail(step, error.kind, reason)
