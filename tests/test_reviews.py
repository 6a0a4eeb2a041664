"""Approve and reject: who may decide, what may be overridden, and exactly one decision."""

import threading

import pytest
from django.db import connection

from reviews.errors import InvalidOverrides, ReviewAlreadyDecided, ReviewNotAllowed
from reviews.models import ReviewDecision, ReviewRequest
from reviews.services import approve, reject
from runs import engine
from runs.integrity import verify_run
from runs.models import Run
from runs.services import start_run
from tests.conftest import make_user, make_version, needs_postgres
from tests.test_engine import REVIEW_DEFINITION


@pytest.fixture
def paused_run(db, operator):
    version = make_version(REVIEW_DEFINITION, name="Reviewed payment")
    run = start_run(
        version=version,
        environment="sandbox",
        type="manual",
        user=operator,
        inputs={"customer_id": "cust_anna", "amount": 900000},
    )
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "awaiting_review"
    return run


@pytest.fixture
def request_(paused_run):
    return ReviewRequest.objects.get(run=paused_run)


def test_rejection_fails_the_run_with_kind_rejected_at_the_review_step(request_, reviewer):
    reject(request=request_, reviewer=reviewer, comment="Customer disputes the invoice")
    run = Run.objects.get(pk=request_.run_id)
    assert run.status == "failed"
    assert run.failure_kind == "rejected"
    assert run.failed_step.node_id == "review"
    assert run.failure_reason == "Rejected by rita: Customer disputes the invoice"
    assert verify_run(run).intact


def test_decision_records_reviewer_time_what_they_saw_and_comment(request_, reviewer):
    decision = approve(request=request_, reviewer=reviewer, comment="ok")
    assert decision.reviewer == reviewer
    assert decision.shown_values == {"amount": 900000, "customer": "cust_anna"}
    assert decision.comment == "ok"
    assert decision.overrides == []
    assert decision.decided_at is not None


def test_approval_resumes_the_run(request_, reviewer):
    approve(request=request_, reviewer=reviewer)
    engine.drive(request_.run_id)
    run = Run.objects.get(pk=request_.run_id)
    assert run.status == "completed"
    assert run.output == {"charged": 900000}


def test_the_person_who_started_the_run_cannot_decide_it(db, request_):
    starter = request_.run.started_by_user
    from django.contrib.auth.models import Group

    starter.groups.add(Group.objects.get(name="Reviewers"))
    starter = type(starter).objects.get(pk=starter.pk)  # fresh permission cache
    with pytest.raises(ReviewNotAllowed, match="four-eyes"):
        approve(request=request_, reviewer=starter)
    assert not ReviewDecision.objects.exists()


def test_a_user_without_the_decide_permission_is_refused(request_, second_operator):
    with pytest.raises(ReviewNotAllowed, match="permission"):
        reject(request=request_, reviewer=second_operator)


def test_reviewer_group_on_the_node_restricts_who_decides(db, operator, reviewer):
    definition = {**REVIEW_DEFINITION, "nodes": {**REVIEW_DEFINITION["nodes"]}}
    definition["nodes"]["review"] = {
        **definition["nodes"]["review"],
        "reviewer_group": "Payment approvers",
    }
    version = make_version(definition, name="Group reviewed payment")
    run = start_run(
        version=version,
        environment="sandbox",
        type="manual",
        user=operator,
        inputs={"customer_id": "cust_anna", "amount": 5},
    )
    engine.drive(run.pk)
    request = ReviewRequest.objects.get(run=run)
    with pytest.raises(ReviewNotAllowed, match="Payment approvers"):
        approve(request=request, reviewer=reviewer)
    from django.contrib.auth.models import Group

    approver = make_user("paul", "Reviewers")
    approver.groups.add(Group.objects.create(name="Payment approvers"))
    approve(request=request, reviewer=approver)
    assert ReviewDecision.objects.filter(request=request).exists()


def test_overriding_a_field_that_is_not_overridable_is_refused(request_, reviewer):
    with pytest.raises(InvalidOverrides) as refused:
        approve(request=request_, reviewer=reviewer, overrides={"customer": "cust_bob"})
    assert refused.value.details == [
        {"field": "customer", "message": "This field cannot be overridden."}
    ]
    assert not ReviewDecision.objects.exists()


def test_an_override_that_breaks_its_schema_is_refused(request_, reviewer):
    with pytest.raises(InvalidOverrides) as refused:
        approve(request=request_, reviewer=reviewer, overrides={"amount": 0})
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
        reject(request=request_, reviewer=second_reviewer)
    assert ReviewDecision.objects.filter(request=request_).count() == 1


def test_a_cancelled_run_cannot_be_decided(request_, reviewer, operator):
    from runs.services import cancel_run

    cancel_run(run=request_.run, user=operator)
    with pytest.raises(ReviewAlreadyDecided, match="cancelled"):
        approve(request=request_, reviewer=reviewer)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_produce_exactly_one_decision(operator, reviewer, second_reviewer):
    version = make_version(REVIEW_DEFINITION, name="Reviewed payment")
    run = start_run(
        version=version,
        environment="sandbox",
        type="manual",
        user=operator,
        inputs={"customer_id": "cust_anna", "amount": 900000},
    )
    engine.drive(run.pk)
    request = ReviewRequest.objects.get(run=run)
    barrier = threading.Barrier(2)
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

    threads = [threading.Thread(target=decide, args=(p,)) for p in (reviewer, second_reviewer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved", "refused"]
    assert ReviewDecision.objects.filter(request=request).count() == 1
    assert Run.objects.get(pk=run.pk).steps.filter(node_id="review").count() == 1
