"""Deadlines: a review nobody decided in time is decided by the system, as its node says.

`on_timeout: reject` (the default) rejects the run; `escalate` hands the review to
`escalate_to` with a new deadline (escalation_timeout), after which it is rejected. Nothing is
ever approved by a timeout. The system's decision is a decision row like a person's, with no
reviewer, `decided_by` system and its reason; its event (review.decided, actor
system:review-timeout) is on the run's Events tab, and a rejection fails the run, which the
outbound webhooks announce as run.failed with that reason. An escalation announces
run.awaiting_review again (for the new group).

The scheduler calls `decide_expired_reviews` on each tick; several schedulers are safe (each
review is decided under its run's lock, and re-checked there).
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from reviews.models import DecidedBy, Decision, ReviewDecision, ReviewRequest
from reviews.recording import append_decided_event, create_decision, record_outcome
from reviews.shown import shown_view
from reviews.state import ReviewState, review_state
from runs import dispatch
from runs.models import RunStatus
from runs.services import actor_label
from runs.writer import RunWriter

logger = logging.getLogger(__name__)

TIMEOUT_ACTOR = actor_label(system="review-timeout")
# How many expired reviews one tick decides; the next tick takes the rest.
BATCH = 100


def expired_reviews(now=None, limit: int = BATCH) -> list[int]:
    """The ids of open requests whose deadline (or escalation's) has passed, oldest first."""
    now = now or timezone.now()
    decisions = ReviewDecision.objects.filter(request=OuterRef("pk"))
    closed = Exists(decisions.filter(final=True))
    escalated_later = Exists(decisions.filter(decision=Decision.ESCALATED, deadline__gt=now))
    # The request's own deadline comes first; an escalation only moves it later.
    return list(
        ReviewRequest.objects.filter(deadline__lte=now, run__status=RunStatus.AWAITING_REVIEW)
        .exclude(closed)
        .exclude(escalated_later)
        .order_by("deadline", "id")
        .values_list("pk", flat=True)[:limit]
    )


def decide_expired_reviews(now=None) -> list[ReviewDecision]:
    """Decide every review whose deadline has passed; returns the decisions recorded."""
    decided = []
    for request_id in expired_reviews(now):
        decision = decide_timeout(request_id, now=now)
        if decision is not None:
            decided.append(decision)
    if decided:
        logger.info("decided %d review(s) whose deadline passed", len(decided))
    return decided


def decide_timeout(request_id: int, now=None) -> ReviewDecision | None:
    """Record the system's decision on one expired review; None when it is no longer due (a
    person decided, the run was cancelled, another scheduler was first)."""
    request = ReviewRequest.objects.select_related("run").get(pk=request_id)
    with transaction.atomic():
        writer = RunWriter.lock_behind_others(request.run)
        request.run = writer.run
        state = review_state(request)
        now = now or timezone.now()
        if not state.is_open or state.deadline is None or state.deadline > now:
            return None
        if state.policy.escalates and state.escalation is None:
            record = _escalate(state, now)
        else:
            record = _reject(state)
        append_decided_event(writer, state, record, TIMEOUT_ACTOR)
        if record.final:
            record_outcome(writer, state, record, TIMEOUT_ACTOR)
        else:
            dispatch.deliver_webhooks_after_commit(writer.run, RunStatus.AWAITING_REVIEW)
        writer.flush()
    return record


def _escalate(state: ReviewState, now) -> ReviewDecision:
    policy = state.policy
    deadline = now + timedelta(seconds=policy.escalation_timeout_seconds or 0)
    return create_decision(
        state,
        view=shown_view(state),
        decided_by=DecidedBy.SYSTEM,
        reviewer=None,
        decision=Decision.ESCALATED,
        comment=(
            f"No decision by the deadline ({_when(state.deadline)}); {_approvals(state)}. "
            f"Escalated to {policy.escalate_to}, who have until {_when(deadline)}."
        ),
        overrides=[],
        final=False,
        deadline=deadline,
    )


def _reject(state: ReviewState) -> ReviewDecision:
    escalated = " after the escalation" if state.escalation else ""
    return create_decision(
        state,
        view=shown_view(state),
        decided_by=DecidedBy.SYSTEM,
        reviewer=None,
        decision=Decision.REJECTED,
        comment=(
            f"No decision by the deadline{escalated} ({_when(state.deadline)}); {_approvals(state)}"
        ),
        overrides=[],
        final=True,
    )


def _approvals(state: ReviewState) -> str:
    required, recorded = state.policy.approvals, len(state.approvals)
    return f"{recorded} of {required} approval{'s' if required != 1 else ''} recorded"


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "none"
