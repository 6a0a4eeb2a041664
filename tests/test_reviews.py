"""Approve and reject: who may decide (four-eyes across the retry lineage, re-checked when the
decision is taken), quorums of distinct reviewers, and exactly one outcome per review."""

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from rapidfolio.roles import OPERATORS, REVIEWERS
from reviews.errors import (
    InvalidDecision,
    InvalidOverrides,
    ReviewAlreadyDecided,
    ReviewNotAllowed,
)
from reviews.models import ReviewDecision, ReviewRequest
from reviews.selectors import reviews_awaiting_decision
from reviews.services import approve, reject
from runs import engine
from runs.integrity import verify_run
from runs.models import Run, RunEvent
from runs.services import retry_run, start_run
from tests.conftest import make_user, make_version, needs_postgres
from tests.factories import force_status
from tests.test_engine import REVIEW_DEFINITION


def quorum_definition(approvals=2, **review):
    definition = {**REVIEW_DEFINITION, "nodes": {**REVIEW_DEFINITION["nodes"]}}
    definition["nodes"]["review"] = {
        **definition["nodes"]["review"],
        "approvals": approvals,
        **review,
    }
    return definition


def paused(version, starter, amount=900000, customer="cust_anna"):
    run = start_run(
        version=version,
        environment="sandbox",
        type="manual",
        user=starter,
        inputs={"customer_id": customer, "amount": amount},
    )
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "awaiting_review"
    return ReviewRequest.objects.get(run=run)


@pytest.fixture
def paused_run(db, operator):
    return paused(make_version(REVIEW_DEFINITION, name="Reviewed payment"), operator).run


@pytest.fixture
def request_(paused_run):
    return ReviewRequest.objects.get(run=paused_run)


@pytest.fixture
def quorum_review(db, operator):
    return paused(make_version(quorum_definition(), name="Two-person payment"), operator)


@pytest.fixture
def third_reviewer(db):
    return make_user("rosa", REVIEWERS)


# --- one reviewer ---------------------------------------------------------------------------
def test_rejection_fails_the_run_with_kind_rejected_at_the_review_step(request_, reviewer):
    reject(request=request_, reviewer=reviewer, comment="Customer disputes the invoice")
    run = Run.objects.get(pk=request_.run_id)
    assert run.status == "failed"
    assert run.failure_kind == "rejected"
    assert run.failed_step.node_id == "review"
    assert run.failure_reason == "Rejected by rita: Customer disputes the invoice"
    assert verify_run(run).intact


def test_reject_needs_a_reason(request_, reviewer):
    with pytest.raises(InvalidDecision) as refused:
        reject(request=request_, reviewer=reviewer, comment="   ")
    assert refused.value.details[0]["field"] == "reason"
    assert not ReviewDecision.objects.exists()
    assert Run.objects.get(pk=request_.run_id).status == "awaiting_review"


def test_decision_records_reviewer_time_what_they_saw_and_comment(request_, reviewer):
    decision = approve(request=request_, reviewer=reviewer, comment="ok")
    assert decision.reviewer == reviewer
    assert decision.decided_by == "person"
    assert decision.shown_values == {"amount": 900000, "customer": "cust_anna"}
    assert decision.comment == "ok"
    assert decision.overrides == []
    assert decision.decided_at is not None
    assert decision.final and decision.sequence == 1


def test_approval_resumes_the_run(request_, reviewer):
    approve(request=request_, reviewer=reviewer)
    engine.drive(request_.run_id)
    run = Run.objects.get(pk=request_.run_id)
    assert run.status == "completed"
    assert run.output == {"charged": 900000}


def test_the_person_who_started_the_run_cannot_decide_it(db, request_):
    starter = request_.run.started_by_user
    starter.groups.add(Group.objects.get(name=REVIEWERS))
    starter = type(starter).objects.get(pk=starter.pk)  # fresh permission cache
    with pytest.raises(ReviewNotAllowed, match="four-eyes"):
        approve(request=request_, reviewer=starter)
    assert not ReviewDecision.objects.exists()


def test_a_user_without_the_decide_permission_is_refused(request_, second_operator):
    with pytest.raises(ReviewNotAllowed, match="permission"):
        reject(request=request_, reviewer=second_operator, comment="No")


def test_reviewer_group_on_the_node_restricts_who_decides(db, operator, reviewer):
    definition = quorum_definition(approvals=1, reviewer_group="Payment approvers")
    request = paused(make_version(definition, name="Group reviewed payment"), operator, 5)
    with pytest.raises(ReviewNotAllowed, match="Payment approvers"):
        approve(request=request, reviewer=reviewer)
    approver = make_user("paul", REVIEWERS)
    approver.groups.add(Group.objects.create(name="Payment approvers"))
    approve(request=request, reviewer=approver)
    assert ReviewDecision.objects.filter(request=request).exists()


def test_any_of_the_listed_groups_may_decide(db, operator, reviewer):
    definition = quorum_definition(approvals=1, groups=["Treasury", "Finance managers"])
    request = paused(make_version(definition, name="Listed groups"), operator, 5)
    with pytest.raises(ReviewNotAllowed, match="Only members of Treasury or Finance managers"):
        approve(request=request, reviewer=reviewer)
    reviewer.groups.add(Group.objects.create(name="Finance managers"))
    approve(request=request, reviewer=type(reviewer).objects.get(pk=reviewer.pk))
    assert ReviewDecision.objects.get(request=request).final


def test_overriding_a_field_that_is_not_overridable_is_refused(request_, reviewer):
    with pytest.raises(InvalidOverrides) as refused:
        approve(request=request_, reviewer=reviewer, overrides={"customer": "cust_bob"})
    assert refused.value.details == [
        {"field": "customer", "message": "This field cannot be overridden."}
    ]
    assert not ReviewDecision.objects.exists()


def test_an_override_that_breaks_its_schema_is_refused(request_, reviewer):
    with pytest.raises(InvalidOverrides) as refused:
        approve(request=request_, reviewer=reviewer, overrides={"amount": 0}, comment="Zero")
    assert refused.value.details[0]["field"] == "amount"
    assert (
        "minimum" in refused.value.details[0]["message"]
        or "less than" in (refused.value.details[0]["message"])
    )


def test_an_unchanged_override_is_not_recorded_as_a_change(request_, reviewer):
    decision = approve(request=request_, reviewer=reviewer, overrides={"amount": 900000})
    assert decision.overrides == []


def test_a_second_decision_on_the_same_request_is_refused(request_, reviewer, second_reviewer):
    approve(request=request_, reviewer=reviewer)
    with pytest.raises(ReviewAlreadyDecided):
        reject(request=request_, reviewer=second_reviewer, comment="Too late")
    assert ReviewDecision.objects.filter(request=request_).count() == 1


def test_a_cancelled_run_cannot_be_decided(request_, reviewer, operator):
    from runs.services import cancel_run

    cancel_run(run=request_.run, user=operator)
    with pytest.raises(ReviewAlreadyDecided, match="cancelled"):
        approve(request=request_, reviewer=reviewer)


# --- four-eyes across the retry lineage -----------------------------------------------------
@pytest.fixture
def retried_review(db, operator_reviewer, second_operator):
    """paula starts a run that fails transiently; oscar retries it; the retry waits for review."""
    version = make_version(REVIEW_DEFINITION, name="Reviewed payment")
    with transaction.atomic():
        original = start_run(
            version=version,
            environment="sandbox",
            type="manual",
            user=operator_reviewer,
            inputs={"customer_id": "cust_anna", "amount": 900000},
        )
        force_status(original, "failed")
    retry = retry_run(run=original, user=second_operator)
    engine.drive(retry.pk)
    return ReviewRequest.objects.get(run=retry)


def test_the_starter_of_a_run_this_run_retries_cannot_approve_it(retried_review):
    original = retried_review.run.retry_of
    starter = type(original.started_by_user).objects.get(pk=original.started_by_user_id)
    with pytest.raises(ReviewNotAllowed) as refused:
        approve(request=retried_review, reviewer=starter)
    assert refused.value.message == (
        f"You started run {original.public_id}, which this run retries; another person must "
        "review it (four-eyes rule)."
    )
    assert not ReviewDecision.objects.exists()


def test_the_person_who_retried_cannot_approve_the_retry(retried_review, second_operator):
    second_operator.groups.add(Group.objects.get(name=REVIEWERS))
    retrier = type(second_operator).objects.get(pk=second_operator.pk)
    with pytest.raises(ReviewNotAllowed, match="You started this run"):
        approve(request=retried_review, reviewer=retrier)


def test_the_lineage_is_pinned_in_the_request_and_left_out_of_their_queues(
    retried_review, operator_reviewer, reviewer
):
    assert retried_review.policy["excluded_reviewer_ids"] == sorted(
        [operator_reviewer.pk, retried_review.run.started_by_user_id]
    )
    assert retried_review not in reviews_awaiting_decision(operator_reviewer)
    assert retried_review in reviews_awaiting_decision(reviewer)
    approve(request=retried_review, reviewer=reviewer)
    assert verify_run(retried_review.run).intact


# --- quorum ---------------------------------------------------------------------------------
def test_a_quorum_waits_for_every_approval_each_recorded(quorum_review, reviewer, second_reviewer):
    first = approve(request=quorum_review, reviewer=reviewer, comment="Checked the PO")
    run = Run.objects.get(pk=quorum_review.run_id)
    assert run.status == "awaiting_review"
    assert not first.final and first.sequence == 1
    assert not run.steps.filter(node_id="review").exists()
    second = approve(request=quorum_review, reviewer=second_reviewer, comment="Agreed")
    assert second.final and second.sequence == 2
    run.refresh_from_db()
    assert run.status == "running"
    assert run.steps.get(node_id="review").output == {"amount": 900000, "customer": "cust_anna"}
    events = RunEvent.objects.filter(run=run, type="review.decided").order_by("sequence")
    assert [e.data["approvals"] for e in events] == [
        {"recorded": 1, "required": 2},
        {"recorded": 2, "required": 2},
    ]
    assert verify_run(run).intact


def test_the_same_person_cannot_give_two_approvals_of_a_quorum(quorum_review, reviewer):
    approve(request=quorum_review, reviewer=reviewer)
    with pytest.raises(ReviewNotAllowed, match="already approved this review"):
        approve(request=quorum_review, reviewer=reviewer)
    assert quorum_review.decisions.count() == 1
    assert quorum_review not in reviews_awaiting_decision(reviewer)


def test_one_rejection_ends_a_quorum(quorum_review, reviewer, second_reviewer):
    approve(request=quorum_review, reviewer=reviewer)
    reject(request=quorum_review, reviewer=second_reviewer, comment="Wrong bank details")
    run = Run.objects.get(pk=quorum_review.run_id)
    assert run.status == "failed" and run.failure_kind == "rejected"
    assert run.failure_reason == "Rejected by ravi: Wrong bank details"
    assert verify_run(run).intact


def test_later_approvers_confirm_the_first_approvers_values(
    quorum_review, reviewer, second_reviewer
):
    approve(
        request=quorum_review,
        reviewer=reviewer,
        overrides={"amount": 800000},
        comment="Partial payment agreed",
    )
    with pytest.raises(InvalidOverrides, match="rita approved these values"):
        approve(
            request=quorum_review,
            reviewer=second_reviewer,
            overrides={"amount": 700000},
            comment="Less",
        )
    final = approve(request=quorum_review, reviewer=second_reviewer, overrides={"amount": 800000})
    assert final.shown_values["amount"] == 800000 and final.overrides == []
    engine.drive(quorum_review.run_id)
    assert Run.objects.get(pk=quorum_review.run_id).output == {"charged": 800000}


def test_the_quorum_may_depend_on_the_amount(db, operator):
    version = make_version(
        quorum_definition(approvals="2 if inputs.amount > 5000000 else 1"), name="Tiered"
    )
    small, large = paused(version, operator, 4_000_000), paused(version, operator, 7_500_000)
    assert small.policy["approvals"] == 1
    assert large.policy["approvals"] == 2


def test_an_approvals_expression_giving_no_number_fails_the_run_at_the_review(db, operator):
    version = make_version(quorum_definition(approvals="'two'"), name="Broken quorum")
    run = start_run(
        version=version,
        environment="sandbox",
        type="manual",
        user=operator,
        inputs={"customer_id": "cust_anna", "amount": 5},
    )
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.failure_kind == "permanent"
    assert "approvals `'two'` gave 'two', not a whole number of approvers" in run.failure_reason
    assert not ReviewRequest.objects.filter(run=run).exists()


def test_authority_is_checked_again_when_the_decision_is_taken(quorum_review, reviewer):
    assert reviewer.has_perm("reviews.decide_review")  # what the page saw, cached on the user
    reviewer.groups.remove(Group.objects.get(name=REVIEWERS))
    with pytest.raises(ReviewNotAllowed, match="You do not have permission"):
        approve(request=quorum_review, reviewer=reviewer)
    assert not quorum_review.decisions.exists()


def test_a_reviewer_made_inactive_cannot_decide(quorum_review, reviewer):
    type(reviewer).objects.filter(pk=reviewer.pk).update(is_active=False)
    with pytest.raises(ReviewNotAllowed):
        approve(request=quorum_review, reviewer=reviewer)


def test_operators_who_review_cannot_approve_their_own_quorum_run(db, third_reviewer):
    starter = make_user("sam", OPERATORS, REVIEWERS)
    review = paused(make_version(quorum_definition(), name="Own quorum"), starter)
    approve(request=review, reviewer=third_reviewer)
    with pytest.raises(ReviewNotAllowed, match="four-eyes"):
        approve(request=review, reviewer=starter)


def approve_at_once(request, people) -> list[str]:
    """Each person approves `request` in a thread of their own, all released together:
    "approved" or "refused" (ReviewAlreadyDecided) for each."""
    barrier = threading.Barrier(len(people))
    outcomes = []

    def decide(person):
        try:
            barrier.wait()
            approve(request=ReviewRequest.objects.get(pk=request.pk), reviewer=person)
            outcomes.append("approved")
        except ReviewAlreadyDecided:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_produce_exactly_one_decision(operator, reviewer, second_reviewer):
    version = make_version(REVIEW_DEFINITION, name="Reviewed payment")
    request = paused(version, operator)
    outcomes = approve_at_once(request, (reviewer, second_reviewer))
    assert sorted(outcomes) == ["approved", "refused"]
    assert ReviewDecision.objects.filter(request=request).count() == 1
    assert Run.objects.get(pk=request.run_id).steps.filter(node_id="review").count() == 1


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_of_a_quorum_close_it_exactly_once(
    operator, reviewer, second_reviewer
):
    third = make_user("rosa", REVIEWERS)
    request = paused(make_version(quorum_definition(), name="Two-person payment"), operator)
    outcomes = approve_at_once(request, (reviewer, second_reviewer, third))
    assert sorted(outcomes) == ["approved", "approved", "refused"]
    decisions = ReviewDecision.objects.filter(request=request)
    assert [d.sequence for d in decisions.order_by("sequence")] == [1, 2]
    assert decisions.filter(final=True).count() == 1
    assert Run.objects.get(pk=request.run_id).steps.filter(node_id="review").count() == 1
