"""Deadlines: a review nobody decides in time is decided by the system (rejected, or escalated
to another group with a new deadline), recorded as such with its reason, on the Events tab and
in the outbound webhooks. Nothing is ever approved by a timeout."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from rapidfolio import scheduler
from reviews.errors import ReviewExpired, ReviewNotAllowed
from reviews.models import ReviewDecision
from reviews.services import approve
from reviews.timeouts import TIMEOUT_ACTOR, decide_expired_reviews, expired_reviews
from runs.integrity import verify_run
from runs.models import Run, RunEvent
from runs.services import cancel_run
from tests.conftest import make_version
from tests.test_reviews import paused, quorum_definition
from tests.test_webhooks import Receiver, endpoint

ESCALATING = {
    "timeout": "24h",
    "on_timeout": "escalate",
    "escalate_to": "Finance managers",
    "escalation_timeout": "4h",
}


def timed(operator, approvals=1, **review):
    definition = quorum_definition(approvals=approvals, **{"timeout": "24h", **review})
    return paused(make_version(definition, name="Timed payment"), operator)


def after(moment, **delta):
    return moment + timedelta(**(delta or {"seconds": 1}))


def test_a_review_has_a_deadline_its_timeout_after_the_request(db, operator):
    review = timed(operator)
    assert review.deadline == review.created_at + timedelta(hours=24)
    event = RunEvent.objects.get(run=review.run, type="review.requested")
    assert event.data["deadline"] == review.deadline.isoformat()


def test_an_undecided_review_is_rejected_by_the_system_at_its_deadline(db, operator):
    review = timed(operator)
    assert decide_expired_reviews(now=after(review.deadline, seconds=-1)) == []
    [decision] = decide_expired_reviews(now=after(review.deadline))
    assert decision.decided_by == "system" and decision.reviewer is None
    assert decision.decision == "rejected" and decision.final
    assert decision.comment.startswith("No decision by the deadline (")
    assert decision.comment.endswith("; 0 of 1 approval recorded")
    run = Run.objects.get(pk=review.run_id)
    assert run.status == "failed" and run.failure_kind == "rejected"
    assert run.failure_reason == f"Rejected by the system: {decision.comment}"
    event = RunEvent.objects.get(run=run, type="review.decided")
    assert event.actor == TIMEOUT_ACTOR == "system:review-timeout"
    assert event.data["decided_by"] == "system"
    assert verify_run(run).intact


def test_a_timeout_rejects_even_after_some_approvals(db, operator, reviewer):
    review = timed(operator, approvals=2)
    approve(request=review, reviewer=reviewer)
    [decision] = decide_expired_reviews(now=after(review.deadline))
    assert decision.decision == "rejected"
    assert decision.comment.endswith("; 1 of 2 approvals recorded")


def test_a_decided_or_cancelled_review_is_not_timed_out(db, operator, reviewer):
    decided, cancelled = timed(operator), timed(operator)
    approve(request=decided, reviewer=reviewer)
    cancel_run(run=cancelled.run, user=operator)
    assert expired_reviews(after(decided.deadline, hours=1)) == []
    assert decide_expired_reviews(now=after(decided.deadline, hours=1)) == []


def test_nobody_may_decide_once_the_deadline_passed(db, operator, reviewer, monkeypatch):
    review = timed(operator)
    monkeypatch.setattr(timezone, "now", lambda: after(review.deadline))
    with pytest.raises(ReviewExpired, match="the system decides it now"):
        approve(request=review, reviewer=reviewer)
    assert not ReviewDecision.objects.exists()


def test_an_escalation_hands_the_review_to_another_group_with_a_new_deadline(
    db, operator, reviewer, second_reviewer
):
    second_reviewer.groups.add(Group.objects.create(name="Finance managers"))
    review = timed(operator, **ESCALATING)
    at = after(review.deadline)
    [escalation] = decide_expired_reviews(now=at)
    assert escalation.decision == "escalated" and not escalation.final
    assert escalation.deadline == at + timedelta(hours=4)
    assert "Escalated to Finance managers" in escalation.comment
    run = Run.objects.get(pk=review.run_id)
    assert run.status == "awaiting_review"
    with pytest.raises(ReviewNotAllowed, match="escalated to Finance managers"):
        approve(request=review, reviewer=reviewer)
    assert decide_expired_reviews(now=after(at, hours=1)) == []
    approve(request=review, reviewer=second_reviewer, comment="Approved by finance")
    run.refresh_from_db()
    assert run.status == "running"
    assert verify_run(run).intact


def test_an_escalation_nobody_decides_is_rejected_at_its_own_deadline(db, operator):
    review = timed(operator, **ESCALATING)
    [escalation] = decide_expired_reviews(now=after(review.deadline))
    [rejection] = decide_expired_reviews(now=after(escalation.deadline))
    assert rejection.decision == "rejected"
    assert rejection.comment.startswith("No decision by the deadline after the escalation")
    assert Run.objects.get(pk=review.run_id).status == "failed"


def test_the_scheduler_tick_decides_expired_reviews(db, operator):
    review = timed(operator)
    scheduler.tick(now=after(review.deadline))
    assert Run.objects.get(pk=review.run_id).status == "failed"


@pytest.fixture
def server():
    receiver = Receiver(())
    yield receiver
    receiver.close()


def test_a_timeout_is_announced_by_the_outbound_webhooks(operator, worker, server):
    endpoint(server.url, events=["run.failed"])
    with transaction.atomic():
        review = timed(operator)
    decide_expired_reviews(now=after(review.deadline))
    worker.drain()
    body = json.loads(server.requests[0]["body"])
    assert body["type"] == "run.failed"
    failure = body["data"]["run"]["failure"]
    assert failure["kind"] == "rejected"
    assert failure["reason"].startswith("Rejected by the system: No decision by the deadline")


def test_an_escalation_announces_the_run_awaiting_review_again(operator, worker, server):
    endpoint(server.url, events=["run.awaiting_review"])
    with transaction.atomic():
        review = timed(operator, **ESCALATING)
    worker.drain()
    decide_expired_reviews(now=after(review.deadline))
    worker.drain()
    kinds = [json.loads(r["body"])["type"] for r in server.requests]
    assert kinds == ["run.awaiting_review", "run.awaiting_review"]
