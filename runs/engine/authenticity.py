"""The engine acts only on facts it can authenticate.

Before it executes anything for a pending or running run, the driver checks what it is about to
act on against what the application itself wrote (runs.authenticity's tags, under a key kept
outside the database):

- the run's row, whenever it reads the row whole: its current header (runs.integrity) must be
  the one its run.created event recorded, and that event's tag must verify;
- the committed steps, whenever it loads them (a resume after review, a retry, a redelivery):
  each step's digest must be the one its step.recorded event recorded, that event's tag must
  verify, and every recorded step must be there.

A fact that fails is refused: the run records a `record.refused` event and fails (permanent)
in the same transaction, before anything is executed, so nothing is paid on a forged decision
or on inputs altered behind the application's back.
"""

from typing import NamedTuple

from runs.authenticity import header_tag_matches, step_tag_matches
from runs.engine.interpreter import ENGINE_ACTOR
from runs.integrity import digest, header_of, step_digest
from runs.models import FailureKind, Run, RunEvent, RunStatus, Step
from runs.sql import HeaderFacts
from runs.writer import STEP_RECORDED, RunWriter

RECORD_REFUSED = "record.refused"
CHANGED, FORGED, MISSING = "changed", "forged", "missing"
RUN_HEADER = "run header"

_EXPLANATIONS = {
    CHANGED: "differs from what Rapidfolio recorded (altered outside Rapidfolio)",
    FORGED: (
        "does not carry this installation's authentication tag "
        "(forged or altered outside Rapidfolio)"
    ),
    MISSING: "has no record written by Rapidfolio (forged outside Rapidfolio)",
}
# A step that was recorded but is no longer there: the log the engine would go on from is cut.
REMOVED = "was recorded but is missing (removed outside Rapidfolio)"


class Refusal(NamedTuple):
    """A fact the engine will not act on ("run header" or "step #N (node)"), its problem
    ("changed", "forged" or "missing") and, in words, what is wrong with it."""

    fact: str
    problem: str
    explanation: str = ""

    @property
    def reason(self) -> str:
        subject = "the run header" if self.fact == RUN_HEADER else self.fact
        explanation = self.explanation or _EXPLANATIONS[self.problem]
        return f"Refused to continue: {subject} {explanation}; nothing further was executed."


def header_refusal(run: Run, facts: HeaderFacts) -> Refusal | None:
    """Why the run's row, as read with its HeaderFacts, may not be acted on; None if it may."""
    created = facts.created
    if not isinstance(created, dict) or "header" not in created:
        return Refusal(RUN_HEADER, MISSING)
    header = header_of(run, facts.procedure, run.version.number, facts.retry_of)
    if created["header"] != header:
        return Refusal(RUN_HEADER, CHANGED)
    if not header_tag_matches(created.get("tag"), run.public_id, digest(header)):
        return Refusal(RUN_HEADER, FORGED)
    return None


def steps_refusal(run: Run, steps: list[Step]) -> Refusal | None:
    """Why the run's committed steps may not be acted on; None if they may. One query: the
    data of the run's step.recorded events."""
    recorded: dict[object, list[dict]] = {}
    # Ordered by sequence, not by the model's ordering (which joins the run's table).
    events = RunEvent.objects.filter(run_id=run.pk, type=STEP_RECORDED).order_by("sequence")
    for data in events.values_list("data", flat=True):
        if isinstance(data, dict):
            recorded.setdefault(data.get("step"), []).append(data)
    for step in steps:
        problem = _step_problem(run, step, recorded.pop(step.sequence, []))
        if problem is not None:
            return Refusal(f"step #{step.sequence} ({step.node_id})", problem)
    if recorded:
        sequence, events = min(recorded.items(), key=lambda item: (str(type(item[0])), item[0]))
        return Refusal(f"step #{sequence} ({events[0].get('node')})", MISSING, REMOVED)
    return None


def _step_problem(run: Run, step: Step, events: list[dict]) -> str | None:
    if not events:
        return MISSING
    sha256 = step_digest(step)
    if any(event.get("sha256") != sha256 for event in events):
        return CHANGED
    if not all(
        step_tag_matches(event.get("tag"), run.public_id, step.sequence, sha256) for event in events
    ):
        return FORGED
    return None


def refuse(writer: RunWriter, refusal: Refusal) -> None:
    """Record the refusal and fail the run (permanent), in the caller's transaction."""
    if writer.run.status == RunStatus.PENDING:
        writer.transition(RunStatus.RUNNING, actor=ENGINE_ACTOR)
    writer.append_event(
        RECORD_REFUSED,
        actor=ENGINE_ACTOR,
        data={"fact": refusal.fact, "problem": refusal.problem},
    )
    writer.transition(
        RunStatus.FAILED,
        actor=ENGINE_ACTOR,
        reason=refusal.reason,
        failure_kind=FailureKind.PERMANENT,
        failed_step=None,
    )
