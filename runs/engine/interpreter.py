"""Pure: what a run does next, from its definition and its committed steps. No database.

The next node is always derived from the committed steps (never from a message or a counter),
which is what lets a redelivered or reaped message resume after the last finished step.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

from procedures.node_types import NodeType
from runs.engine import registry
from runs.engine.tools import backoff_seconds, retry_policy
from runs.models import Step, StepStatus

ENGINE_ACTOR = "system:engine"
MAX_STEPS_PER_RUN = 1000


@dataclass
class RunState:
    """The committed step log of a run, as the engine needs it."""

    steps: list[Step] = field(default_factory=list)
    definition: dict = field(default_factory=dict)
    # The environment's integration connections, read once per drive.
    connections: dict = field(default_factory=dict)

    @property
    def next_sequence(self) -> int:
        return self.steps[-1].sequence + 1 if self.steps else 1

    def expression_context(self, inputs) -> dict:
        """What expressions and mappings read: the inputs and each succeeded step's output."""
        outputs = {}
        for step in self.steps:
            if step.status == StepStatus.SUCCEEDED:
                outputs[step.node_id] = {"output": step.output}
        return {"inputs": inputs, "steps": outputs}

    def failed_attempts_at_end(self, node_id: str) -> list[Step]:
        """The node's failed attempts at the end of the log, newest first."""
        attempts = []
        for step in reversed(self.steps):
            if step.node_id != node_id or step.status != StepStatus.FAILED:
                break
            attempts.append(step)
        return attempts


def next_node_id(definition: dict, state: RunState) -> str | None:
    """The node to execute next, derived only from committed steps; None after an end node."""
    if not state.steps:
        return definition["start"]
    last = state.steps[-1]
    if last.status == StepStatus.FAILED:
        # A failed tool attempt: the same node again (the caller checks the retry budget).
        return last.node_id
    node = definition["nodes"][last.node_id]
    handler = registry.handler_for(node["type"])
    return handler.successor(node, last) if handler else None


class CallTool(NamedTuple):
    """Call the tool node's tool outside any transaction, once `wait_seconds` have passed."""

    node_id: str
    wait_seconds: float


class Execute(NamedTuple):
    """Execute this node now, in the current transaction."""

    node_id: str


class Stuck(NamedTuple):
    """The run cannot go on: fail it, naming the step to blame (None when no step is)."""

    reason: str
    step: Step | None


def next_action(state: RunState, now) -> CallTool | Execute | Stuck:
    if len(state.steps) >= MAX_STEPS_PER_RUN:
        return Stuck(f"The run exceeded {MAX_STEPS_PER_RUN} steps; the procedure may loop.", None)
    node_id = next_node_id(state.definition, state)
    if node_id is None:
        return Stuck(
            "The procedure ended without reaching an output node.",
            state.steps[-1] if state.steps else None,
        )
    node = state.definition["nodes"][node_id]
    if node["type"] != NodeType.TOOL:
        return Execute(node_id)
    failed = state.failed_attempts_at_end(node_id)
    if not failed:
        return CallTool(node_id, 0)
    delay = backoff_seconds(retry_policy(node), failed[0].attempt)
    ready_at = failed[0].finished_at + timedelta(seconds=delay)
    return CallTool(node_id, max((ready_at - now).total_seconds(), 0))
