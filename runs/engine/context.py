"""What a node handler records with: the run, its committed steps and this transaction's
writer, with the engine's rules for recording steps, moving the lease and failing."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from procedures.expressions import ExpressionError
from runs.engine.interpreter import ENGINE_ACTOR, RunState
from runs.models import FailureKind, Run, RunStatus, Step, StepStatus
from runs.writer import RunWriter

# The lease moves forward only once it has aged this much. A run's transactions follow each
# other within milliseconds, and moving the lease by a few milliseconds rewrote the run's row
# (a non-HOT update: the lease is indexed) in every transaction, two of a run's four updates of
# it; the reaper's deadline stays within this of "last progress + RUN_LEASE_SECONDS".
LEASE_REFRESH = timedelta(seconds=1)


@dataclass
class NodeContext:
    run: Run
    state: RunState
    writer: RunWriter
    node_id: str = ""
    node: dict | None = None

    @property
    def expression_context(self) -> dict:
        return self.state.expression_context(self.run.inputs)

    def record_step(self, node_type: str, *, input, output, **fields) -> Step:
        """Record this node's execution as the run's next step (with its event)."""
        step = self.writer.add_step(
            sequence=self.state.next_sequence,
            actor=ENGINE_ACTOR,
            node_id=self.node_id,
            node_type=node_type,
            input=input,
            output=output,
            **fields,
        )
        self.state.steps.append(step)
        self._keep_lease()
        return step

    def _keep_lease(self) -> None:
        # A transition that writes the row in this transaction sets the lease already.
        if self.run.status != RunStatus.RUNNING or self.writer.run_written:
            return
        lease = timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)
        if self.run.lease_expires_at is None or lease - self.run.lease_expires_at >= LEASE_REFRESH:
            self.writer.move_lease(lease)

    def transition(self, to_status: str, **details) -> None:
        self.writer.transition(to_status, actor=ENGINE_ACTOR, **details)

    def fail(self, step: Step | None, kind: str, reason: str, outcome: str = "") -> None:
        """Fail the run, naming the step it failed at (None when no step is to blame)."""
        self.transition(
            RunStatus.FAILED, reason=reason, failure_kind=kind, failed_step=step, outcome=outcome
        )

    def fail_at_node(self, node_type: str, *, input, reason: str) -> None:
        """Record the node as a failed step (a permanent failure) and fail the run at it."""
        step = self.record_step(
            node_type,
            input=input,
            output=None,
            status=StepStatus.FAILED,
            error=reason,
            error_kind=FailureKind.PERMANENT,
        )
        self.fail(step, FailureKind.PERMANENT, reason)

    def end_with_outcome(self, node_type: str, *, outcome: str, reason: str) -> None:
        """End the run at a fail node that declares a business outcome: failed, of kind
        business, with the outcome named on the run, on its status event and in the step's
        output. Not a technical failure, so nothing will offer to retry it."""
        step = self.record_step(
            node_type,
            input=None,
            output={"outcome": outcome},
            status=StepStatus.FAILED,
            error=reason,
            error_kind=FailureKind.BUSINESS,
        )
        self.fail(step, FailureKind.BUSINESS, reason, outcome=outcome)

    def fail_expression(self, node_type: str, exc: ExpressionError) -> None:
        reason = f"Expression `{exc.expression}` in node '{self.node_id}' failed: {exc.message}"
        self.fail_at_node(node_type, input={"expression": exc.expression}, reason=reason)

    def at(self, node_id: str) -> "NodeContext":
        """The same run and transaction, at another node."""
        node = self.state.definition["nodes"][node_id]
        return NodeContext(self.run, self.state, self.writer, node_id, node)
