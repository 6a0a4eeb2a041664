"""Recording a decision: this app's row, and through the run's writer, in the same transaction,
its review.decided event and, for the decision that closes the review, the review's step and
the run's transition. Used by people's decisions (reviews.services) and the system's
(reviews.timeouts) alike, under the run's lock.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from procedures.node_types import NodeType
from reviews.errors import ReviewAlreadyDecided
from reviews.integrity import REVIEW_DECIDED, decision_digest
from reviews.models import DecidedBy, Decision, ReviewDecision
from reviews.shown import split_view, view_digest
from reviews.state import ReviewState
from runs.integrity import iso
from runs.models import FailureKind, RunStatus, StepStatus
from runs.writer import RunWriter


def create_decision(state: ReviewState, *, view: dict, **fields) -> ReviewDecision:
    """Insert the decision row, bound to `view` (what the decider was shown); its place is the
    request's next. A concurrent decision of the same place or person is refused."""
    values, context = split_view(view)
    request = state.request
    try:
        with transaction.atomic():
            return ReviewDecision.objects.create(
                request=request,
                run=request.run,
                sequence=state.next_sequence,
                shown_values=values,
                shown_context=context,
                shown_sha256=view_digest(view),
                decided_at=timezone.now(),
                **fields,
            )
    except IntegrityError as exc:
        raise ReviewAlreadyDecided(f"Review {request.public_id} has already been decided.") from exc


def append_decided_event(writer: RunWriter, state: ReviewState, record, actor: str) -> None:
    approvals = len(state.approvals) + (record.decision == Decision.APPROVED)
    data = {
        "review": state.request.public_id,
        "sequence": record.sequence,
        "decision": record.decision,
        "decided_by": record.decided_by,
        "comment": record.comment,
        "overrides": record.overrides,
        "approvals": {"recorded": approvals, "required": state.policy.approvals},
        "final": record.final,
        "shown_sha256": record.shown_sha256,
        "sha256": decision_digest(record),
    }
    if record.decision == Decision.ESCALATED:
        data.update(escalate_to=state.policy.escalate_to, deadline=iso(record.deadline))
    writer.append_event(REVIEW_DECIDED, actor=actor, data=data)


def record_outcome(writer: RunWriter, state: ReviewState, record, actor: str) -> None:
    """The closed review's step (the values the run goes on with, or the rejection) and the
    run's transition."""
    request = state.request
    approved = record.decision == Decision.APPROVED
    rejection = "" if approved else rejection_text(record)
    values = {**state.values, **{c["field"]: c["after"] for c in record.overrides}}
    step = writer.add_step(
        sequence=request.step_sequence,
        actor=actor,
        node_id=request.node_id,
        node_type=NodeType.HUMAN_REVIEW,
        status=StepStatus.SUCCEEDED if approved else StepStatus.FAILED,
        input=request.shown_values,
        output=values if approved else None,
        error=rejection,
        error_kind="" if approved else FailureKind.REJECTED,
        started_at=request.created_at,
    )
    if approved:
        writer.transition(RunStatus.RUNNING, actor=actor)
    else:
        writer.transition(
            RunStatus.FAILED,
            actor=actor,
            reason=rejection,
            failure_kind=FailureKind.REJECTED,
            failed_step=step,
        )


def rejection_text(record: ReviewDecision) -> str:
    if record.decided_by == DecidedBy.SYSTEM:
        return f"Rejected by the system: {record.comment}"
    text = f"Rejected by {record.reviewer.get_username()}"
    return f"{text}: {record.comment}" if record.comment else text
