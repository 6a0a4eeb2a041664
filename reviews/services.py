"""Review decisions: approve or reject a run paused at a human_review node."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from procedures.inputs import input_errors
from reviews.errors import InvalidOverrides, ReviewAlreadyDecided, ReviewNotAllowed
from reviews.models import Decision, ReviewDecision, ReviewRequest
from runs import lifecycle
from runs.events import append_event
from runs.integrity import decision_digest, step_digest
from runs.models import FailureKind, RunStatus, Step, StepStatus
from runs.services import actor_label, enqueue_execution

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
    with transaction.atomic():
        run = lifecycle.lock(request.run)
        request.run = run
        reason = refusal_reason(request, reviewer)
        if reason:
            raise ReviewNotAllowed(reason)
        if ReviewDecision.objects.filter(request=request).exists():
            raise ReviewAlreadyDecided(f"Review {request.public_id} has already been decided.")
        if run.status != RunStatus.AWAITING_REVIEW:
            raise ReviewAlreadyDecided(f"Run {run.public_id} is {run.status}, not awaiting review.")
        changes = validate_overrides(request, overrides) if decision == Decision.APPROVED else []
        try:
            with transaction.atomic():
                record = ReviewDecision.objects.create(
                    request=request,
                    run=run,
                    reviewer=reviewer,
                    decision=decision,
                    comment=comment or "",
                    shown_values=request.shown_values,
                    overrides=changes,
                    decided_at=timezone.now(),
                )
        except IntegrityError as exc:
            raise ReviewAlreadyDecided(
                f"Review {request.public_id} has already been decided."
            ) from exc
        actor = actor_label(user=reviewer)
        append_event(
            run,
            "review.decided",
            actor=actor,
            data={
                "review": request.public_id,
                "decision": decision,
                "comment": record.comment,
                "overrides": changes,
                "sha256": decision_digest(record),
            },
        )
        values = {**request.shown_values, **{c["field"]: c["after"] for c in changes}}
        now = timezone.now()
        step = Step.objects.create(
            run=run,
            sequence=request.step_sequence,
            node_id=request.node_id,
            node_type="human_review",
            status=StepStatus.SUCCEEDED if decision == Decision.APPROVED else StepStatus.FAILED,
            input=request.shown_values,
            output=values if decision == Decision.APPROVED else None,
            error="" if decision == Decision.APPROVED else _rejection_text(reviewer, comment),
            error_kind="" if decision == Decision.APPROVED else FailureKind.REJECTED,
            started_at=request.created_at,
            finished_at=now,
        )
        append_event(
            run,
            "step.recorded",
            actor=actor,
            data={
                "step": step.sequence,
                "node": step.node_id,
                "status": step.status,
                "attempt": 1,
                "sha256": step_digest(step),
            },
        )
        if decision == Decision.APPROVED:
            lifecycle.transition(run, RunStatus.RUNNING, actor=actor)
            enqueue_execution(run, resume=True)
        else:
            lifecycle.transition(
                run,
                RunStatus.FAILED,
                actor=actor,
                reason=_rejection_text(reviewer, comment),
                failure_kind=FailureKind.REJECTED,
                failed_step=step,
            )
    return record


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
