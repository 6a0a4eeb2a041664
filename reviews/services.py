"""Review decisions: approve or reject a run paused at a human_review node.

A decision is checked and recorded under the run's row lock: who may decide (reviews.authority:
the permission, four-eyes across the run's retry lineage, one decision per person, the groups,
re-read from the database), that the review is still open and within its deadline, that it is
taken on what the reviewer was shown (`seen`, the digest of reviews.shown's view; else it is
refused as stale), and its content: overrides within each field's policy and with a comment, a
rejection with a reason. An approval records one row; the approval that completes the quorum
(or any rejection) closes the review: the step, the transition and, once approved, the resume.

`check_approval` and `check_rejection` make the same checks without recording anything: the
confirmation step (reviews.views) shows what they found before the reviewer confirms it.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from reviews import authority
from reviews.amounts import payment_amount
from reviews.authority import DECIDE_PERMISSION, fresh_user
from reviews.errors import (
    InvalidDecision,
    ReviewAlreadyDecided,
    ReviewExpired,
    ReviewNotAllowed,
    StaleReview,
)
from reviews.models import DecidedBy, Decision, ReviewDecision, ReviewRequest
from reviews.otp_policy import require_verified_for
from reviews.overrides import check_overrides
from reviews.recording import append_decided_event, create_decision, record_outcome
from reviews.shown import shown_view, view_digest, what_changed
from reviews.state import ReviewState, review_state
from runs import dispatch
from runs.models import RunStatus
from runs.services import actor_label
from runs.writer import RunWriter

__all__ = [
    "DECIDE_PERMISSION",
    "approve",
    "check_approval",
    "check_may_decide",
    "check_rejection",
    "reject",
]

# What a reviewer confirms before a decision is recorded (the confirmation step).
CONFIRM_OVERRIDES, CONFIRM_LIVE, CONFIRM_AMOUNT = "overrides", "live", "amount"
CONFIRM_REJECTION = "rejection"


def refusal_reason(request: ReviewRequest, user, state: ReviewState | None = None) -> str | None:
    """Why `user` may not decide `request` now, or None when they may (reviews.authority)."""
    return authority.refusal_reason(state or review_state(request), user)


@dataclass(frozen=True)
class Proposal:
    """An approval checked but not recorded: what the confirmation step shows."""

    state: ReviewState
    changes: list[dict]  # [{field, before, after}]
    confirm: tuple[str, ...]  # CONFIRM_OVERRIDES, CONFIRM_LIVE, CONFIRM_AMOUNT


def confirmations(state: ReviewState, changes: list[dict]) -> tuple[str, ...]:
    """What the reviewer must confirm before this approval is recorded: their changes, that
    the run is live, that the amount is above the node's confirm_above."""
    needed = []
    if changes:
        needed.append(CONFIRM_OVERRIDES)
    if state.run.environment == "live":
        needed.append(CONFIRM_LIVE)
    amount = payment_amount(state, changes)
    threshold = state.policy.confirm_above
    if threshold is not None and amount is not None and amount > threshold:
        needed.append(CONFIRM_AMOUNT)
    return tuple(needed)


def check_approval(
    *,
    request: ReviewRequest,
    reviewer,
    overrides: dict | None = None,
    comment: str = "",
    seen: tuple | None = None,
) -> Proposal:
    """Check an approval as `approve` would (`seen`: the page's digest and time), recording
    nothing."""
    state = review_state(request)
    _check_all(state, reviewer, seen)
    changes = _checked_content(state, Decision.APPROVED, comment, overrides)
    return Proposal(state, changes, confirmations(state, changes))


def check_rejection(
    *, request: ReviewRequest, reviewer, comment: str = "", seen: tuple | None = None
) -> ReviewState:
    """Check a rejection as `reject` would, recording nothing."""
    state = review_state(request)
    _check_all(state, reviewer, seen)
    _checked_content(state, Decision.REJECTED, comment, None)
    return state


def check_may_decide(state: ReviewState, reviewer) -> None:
    """What refuses any decision before its content is read: a session that must be verified
    (reviews.otp_policy), a review that is closed or past its deadline."""
    require_verified_for(state.run, reviewer)
    _check_open(state)


def _check_all(state: ReviewState, reviewer, seen: tuple | None) -> None:
    reason = authority.refusal_reason(state, reviewer)
    if reason:
        raise ReviewNotAllowed(reason)
    check_may_decide(state, reviewer)
    if seen is not None:
        _bound_view(state, *seen)


def _check_open(state: ReviewState) -> None:
    run, request = state.run, state.request
    if run.status != RunStatus.AWAITING_REVIEW:
        raise ReviewAlreadyDecided(f"Run {run.public_id} is {run.status}, not awaiting review.")
    if state.final is not None:
        raise ReviewAlreadyDecided(f"Review {request.public_id} has already been decided.")
    deadline = state.deadline
    if deadline is not None and timezone.now() >= deadline:
        raise ReviewExpired(
            f"The deadline for this review passed at {deadline:%Y-%m-%d %H:%M} UTC; the "
            "system decides it now, as the procedure says "
            f"({'escalate' if state.policy.escalates and not state.escalation else 'reject'})."
        )


def _checked_content(state: ReviewState, decision: str, comment: str, overrides) -> list[dict]:
    """The approval's changes (overrides in policy, with a comment) or the rejection's reason;
    raises InvalidDecision naming each field to correct."""
    if decision != Decision.APPROVED:
        if not (comment or "").strip():
            message = "Give the reason for rejecting: it is recorded as the run's failure."
            raise InvalidDecision(
                "A rejection needs a reason.", details=[{"field": "reason", "message": message}]
            )
        return []
    changes = check_overrides(state, overrides)
    if changes and not (comment or "").strip():
        fields = ", ".join(change["field"] for change in changes)
        message = f"Say why you changed {fields}: an override needs a comment."
        raise InvalidDecision(message, details=[{"field": "comment", "message": message}])
    return changes


def _bound_view(state: ReviewState, seen: str | None, seen_at) -> dict:
    """What the reviewer is shown now; refused as stale when it is not what `seen` says they
    were shown (at `seen_at`). Code that decides without a page passes no `seen`."""
    view = shown_view(state)
    if seen is not None and seen != view_digest(view):
        duplicates = [item["run"] for item in view["duplicates"]]
        raise StaleReview(
            what_changed(state, seen_at, duplicates) + " Read it again before you decide."
        )
    return view


def _decide(
    *,
    request: ReviewRequest,
    reviewer,
    decision: str,
    comment: str,
    overrides: dict | None,
    seen: str | None,
    seen_at,
    confirmed,
) -> ReviewDecision:
    """Record the decision (this app's row) and, through the run's writer in the same
    transaction, its event and, when it closes the review, the step and the transition."""
    with transaction.atomic():
        writer = RunWriter.lock_behind_others(request.run)
        run = request.run = writer.run
        state = review_state(request)
        # Authority as the database has it now, not as it was when the page was shown.
        reason = authority.refusal_reason(state, fresh_user(reviewer))
        if reason:
            raise ReviewNotAllowed(reason)
        check_may_decide(state, reviewer)  # two-factor for live runs, when an admin asks
        view = _bound_view(state, seen, seen_at)
        changes = _checked_content(state, decision, comment, overrides)
        record = create_decision(
            state,
            view=view,
            decided_by=DecidedBy.PERSON,
            reviewer=reviewer,
            decision=decision,
            comment=(comment or "").strip(),
            overrides=changes,
            confirmed=list(confirmed or ()),
            final=decision == Decision.REJECTED or state.approvals_needed <= 1,
        )
        actor = actor_label(user=reviewer)
        append_decided_event(writer, state, record, actor)
        if record.final:
            record_outcome(writer, state, record, actor)
        writer.flush()
        if record.final and decision == Decision.APPROVED:
            dispatch.enqueue_execution(run, resume=True)
    return record


def approve(
    *,
    request: ReviewRequest,
    reviewer,
    overrides: dict | None = None,
    comment: str = "",
    seen: str | None = None,
    seen_at=None,
    confirmed=(),
) -> ReviewDecision:
    """Approve, with optional overrides of the allowed fields (and then a comment). The last
    approval of the quorum resumes the run; an earlier one leaves it awaiting review.

    `seen` is the digest of the page the reviewer decided on (reviews.shown), shown at
    `seen_at`; `confirmed` what they confirmed on the confirmation step."""
    return _decide(
        request=request,
        reviewer=reviewer,
        decision=Decision.APPROVED,
        comment=comment,
        overrides=overrides,
        seen=seen,
        seen_at=seen_at,
        confirmed=confirmed,
    )


def reject(
    *,
    request: ReviewRequest,
    reviewer,
    comment: str = "",
    seen: str | None = None,
    seen_at=None,
    confirmed=(),
) -> ReviewDecision:
    """Reject, giving the reason in `comment`; the run fails with kind `rejected` at the
    review step, whatever approvals were recorded before."""
    return _decide(
        request=request,
        reviewer=reviewer,
        decision=Decision.REJECTED,
        comment=comment,
        overrides=None,
        seen=seen,
        seen_at=seen_at,
        confirmed=confirmed,
    )
