"""Review decisions: approve or reject a run paused at a human_review node."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from procedures.inputs import input_errors
from procedures.node_types import NodeType
from reviews.errors import InvalidOverrides, ReviewAlreadyDecided, ReviewNotAllowed
from reviews.integrity import REVIEW_DECIDED, decision_digest
from reviews.models import Decision, ReviewDecision, ReviewRequest
from runs import dispatch
from runs.models import FailureKind, RunStatus, StepStatus
from runs.services import actor_label
from runs.writer import RunWriter

DECIDE_PERMISSION = "reviews.decide_review"


def refusal_reason(request: ReviewRequest, user) -> str | None:
    """Why `user` may not decide `request`, or None when they may."""
    if not user.is_authenticated:
        return "You must be logged in to decide reviews."
    if not user.has_perm(DECIDE_PERMISSION):
        return "You do not have permission to decide reviews."
    if request.run.started_by_user_id == user.pk:
        return "You started this run; another person must review it (four-eyes rule)."
    if request.reviewer_group and not user.groups.filter(name=request.reviewer_group).exists():
        return f"Only members of {request.reviewer_group} may decide this review."
    return None


def validate_overrides(request: ReviewRequest, overrides: dict | None) -> list[dict]:
    """Turn submitted values into [{field, before, after}] for fields that changed."""
    overrides = overrides or {}
    allowed = {field["name"]: field.get("schema") or {} for field in request.overridable_fields}
    problems = []
    for name in overrides:
        if name not in allowed:
            problems.append({"field": name, "message": "This field cannot be overridden."})
    for name, value in overrides.items():
        if name in allowed:
            for problem in input_errors(allowed[name], value):
                problems.append({"field": name, "message": problem["message"]})
    if problems:
        raise InvalidOverrides(
            "The overrides are not valid: "
            + "; ".join(f"{p['field']}: {p['message']}" for p in problems),
            details=problems,
        )
    return [
        {"field": name, "before": request.shown_values.get(name), "after": value}
        for name, value in overrides.items()
        if request.shown_values.get(name) != value
    ]


def _decide(
    *, request: ReviewRequest, reviewer, decision: str, comment: str, overrides: dict | None
) -> ReviewDecision:
    """Record the decision (this app's row) and, through the run's writer in the same
    transaction, its event, the review's step and the run's transition."""
    with transaction.atomic():
        writer = RunWriter.lock(request.run)
        run = request.run = writer.run
        reason = refusal_reason(request, reviewer)
        if reason:
            raise ReviewNotAllowed(reason)
        if ReviewDecision.objects.filter(request=request).exists():
            raise ReviewAlreadyDecided(f"Review {request.public_id} has already been decided.")
        if run.status != RunStatus.AWAITING_REVIEW:
            raise ReviewAlreadyDecided(f"Run {run.public_id} is {run.status}, not awaiting review.")
        changes = validate_overrides(request, overrides) if decision == Decision.APPROVED else []
        record = _create_decision(request, reviewer, decision, comment, changes)
        actor = actor_label(user=reviewer)
        writer.append_event(
            REVIEW_DECIDED,
            actor=actor,
            data={
                "review": request.public_id,
                "decision": decision,
                "comment": record.comment,
                "overrides": changes,
                "sha256": decision_digest(record),
            },
        )
        _record_outcome(writer, request, record, actor)
        writer.flush()
        if decision == Decision.APPROVED:
            dispatch.enqueue_execution(run, resume=True)
    return record


def _create_decision(request, reviewer, decision, comment, changes) -> ReviewDecision:
    try:
        with transaction.atomic():
            return ReviewDecision.objects.create(
                request=request,
                run=request.run,
                reviewer=reviewer,
                decision=decision,
                comment=comment or "",
                shown_values=request.shown_values,
                overrides=changes,
                decided_at=timezone.now(),
            )
    except IntegrityError as exc:
        raise ReviewAlreadyDecided(f"Review {request.public_id} has already been decided.") from exc


def _record_outcome(writer: RunWriter, request, record: ReviewDecision, actor: str) -> None:
    """The review's step (the values it goes on with, or the rejection) and the transition."""
    approved = record.decision == Decision.APPROVED
    rejection = "" if approved else _rejection_text(record.reviewer, record.comment)
    values = {**request.shown_values, **{c["field"]: c["after"] for c in record.overrides}}
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


def _rejection_text(reviewer, comment: str) -> str:
    text = f"Rejected by {reviewer.get_username()}"
    return f"{text}: {comment}" if comment else text


def approve(
    *, request: ReviewRequest, reviewer, overrides: dict | None = None, comment: str = ""
) -> ReviewDecision:
    """Approve, with optional overrides of the allowed fields; the run resumes."""
    return _decide(
        request=request,
        reviewer=reviewer,
        decision=Decision.APPROVED,
        comment=comment,
        overrides=overrides,
    )


def reject(*, request: ReviewRequest, reviewer, comment: str = "") -> ReviewDecision:
    """Reject; the run fails with kind `rejected` at the review step."""
    return _decide(
        request=request,
        reviewer=reviewer,
        decision=Decision.REJECTED,
        comment=comment,
        overrides=None,
    )
