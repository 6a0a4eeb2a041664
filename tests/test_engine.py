"""The engine runs procedures: steps in order, exact requests and responses, retries with
backoff, failures that name their step, human review pause and resume."""

import json

import pytest

from reviews.models import ReviewRequest
from reviews.services import approve
from runs import engine
from runs.engine import interpreter
from runs.integrity import verify_run
from runs.models import Run
from runs.services import start_run
from tests.conftest import make_version

FAST_RETRY = {"max_attempts": 3, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2}

CREDIT_DEFINITION = {
    "input_schema": {
        "type": "object",
        "required": ["customer_id", "amount"],
        "properties": {
            "customer_id": {"type": "string"},
            "amount": {"type": "integer", "minimum": 1},
        },
    },
    "start": "credit",
    "nodes": {
        "credit": {
            "type": "tool",
            "tool": "credit.check",
            "input": {"customer_id": "inputs.customer_id", "requested_amount": "inputs.amount"},
            "retry": FAST_RETRY,
            "next": "decide",
        },
        "decide": {
            "type": "condition",
            "expression": "steps.credit.output.score >= 300",
            "then": "pay",
            "else": "declined",
        },
        "pay": {
            "type": "tool",
            "tool": "stripe.create_payment_intent",
            "input": {
                "amount": "inputs.amount",
                "currency": "'usd'",
                "customer": "inputs.customer_id",
            },
            "retry": FAST_RETRY,
            "next": "done",
        },
        "done": {
            "type": "output",
            "value": {"payment": "steps.pay.output.id", "score": "steps.credit.output.score"},
        },
        "declined": {"type": "fail", "reason": "Credit score too low"},
    },
}

REVIEW_DEFINITION = {
    "input_schema": {
        "type": "object",
        "required": ["customer_id", "amount"],
        "properties": {
            "customer_id": {"type": "string"},
            "amount": {"type": "integer", "minimum": 1},
        },
    },
    "start": "review",
    "nodes": {
        "review": {
            "type": "human_review",
            "title": "Approve payment",
            "show": {"amount": "inputs.amount", "customer": "inputs.customer_id"},
            "overridable": {"amount": {"type": "integer", "minimum": 1}},
            "next": "pay",
        },
        "pay": {
            "type": "tool",
            "tool": "stripe.create_payment_intent",
            "input": {
                "amount": "steps.review.output.amount",
                "currency": "'usd'",
                "customer": "inputs.customer_id",
            },
            "next": "done",
        },
        "done": {"type": "output", "value": {"charged": "steps.pay.output.amount"}},
    },
}


def _start(version, operator=None, **inputs):
    return start_run(
        version=version,
        environment="sandbox",
        inputs=inputs,
        type="manual" if operator else "api",
        user=operator,
    )


@pytest.fixture
def credit_version(db):
    return make_version(CREDIT_DEFINITION, name="Credit and pay")


@pytest.fixture
def review_version(db):
    return make_version(REVIEW_DEFINITION, name="Reviewed payment")


def test_nodes_run_in_order_and_the_run_completes_with_its_output(credit_version):
    run = _start(credit_version, customer_id="cust_anna", amount=1200)
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "completed"
    assert [s.node_id for s in run.steps.order_by("sequence")] == [
        "credit",
        "decide",
        "pay",
        "done",
    ]
    pay = run.steps.get(node_id="pay")
    assert run.output == {
        "payment": pay.output["id"],
        "score": run.steps.get(node_id="credit").output["score"],
    }
    assert verify_run(run).intact


def test_tool_step_records_exact_request_response_and_idempotency_key(credit_version):
    run = _start(credit_version, customer_id="cust_anna", amount=1200)
    engine.drive(run.pk)
    pay = Run.objects.get(pk=run.pk).steps.get(node_id="pay")
    assert pay.input == {"amount": 1200, "currency": "usd", "customer": "cust_anna"}
    assert pay.idempotency_key == f"{run.public_id}-pay-s3-a1"
    assert pay.idempotency_key in pay.request
    sent = json.loads(pay.request)
    assert json.dumps(sent)  # the request is JSON text, stored as sent
    assert json.loads(pay.response)
    assert pay.started_at <= pay.finished_at


def test_permanent_tool_error_fails_the_run_at_once_naming_the_step(credit_version):
    run = _start(credit_version, customer_id="cust_blocked", amount=1200)
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.failure_kind == "permanent"
    assert run.failed_step.node_id == "credit"
    assert run.steps.count() == 1
    assert "Node 'credit' (credit.check) failed" in run.failure_reason


def test_fail_node_ends_the_run_with_its_reason(db):
    definition = json.loads(json.dumps(CREDIT_DEFINITION))
    definition["nodes"]["decide"]["expression"] = "steps.credit.output.score > 10000"
    version = make_version(definition, name="Always declined")
    run = _start(version, customer_id="cust_anna", amount=1200)
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.failure_reason == "Credit score too low"
    assert run.failed_step.node_id == "declined"


def test_expression_error_at_run_time_fails_permanently_naming_the_expression(db):
    definition = json.loads(json.dumps(CREDIT_DEFINITION))
    definition["nodes"]["decide"]["expression"] = "steps.credit.output.no_such_field > 1"
    version = make_version(definition, name="Broken condition")
    run = _start(version, customer_id="cust_anna", amount=1200)
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.failure_kind == "permanent"
    assert run.failed_step.node_id == "decide"
    assert "steps.credit.output.no_such_field > 1" in run.failure_reason


def test_transient_errors_are_retried_with_backoff_until_success(credit_version, worker):
    run = _start(credit_version, customer_id="cust_flaky_9", amount=1200)
    worker.drain()
    run.refresh_from_db()
    assert run.status == "completed"
    credit_steps = list(run.steps.filter(node_id="credit").order_by("sequence"))
    assert [(s.attempt, s.status) for s in credit_steps] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert credit_steps[0].error_kind == "transient"
    gap = (credit_steps[1].started_at - credit_steps[0].finished_at).total_seconds()
    assert gap >= 0.05  # waited for the backoff
    assert len({s.idempotency_key for s in credit_steps}) == 3


def test_exhausted_transient_errors_fail_the_run_with_kind_transient(credit_version, worker):
    run = _start(credit_version, customer_id="cust_timeout", amount=1200)
    worker.drain()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.failure_kind == "transient"
    assert run.failed_step.node_id == "credit" and run.failed_step.attempt == 3
    assert "after 3 attempts" in run.failure_reason


def test_human_review_pauses_with_the_exact_values_shown(review_version, operator):
    run = _start(review_version, operator, customer_id="cust_anna", amount=900000)
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "awaiting_review"
    request = ReviewRequest.objects.get(run=run)
    assert request.shown_values == {"amount": 900000, "customer": "cust_anna"}
    # With each field's override policy (a bare schema: any direction, no bound).
    assert request.overridable_fields == [
        {
            "name": "amount",
            "schema": {"type": "integer", "minimum": 1},
            "direction": "any",
            "max_change_percent": None,
        }
    ]
    assert run.steps.count() == 0


def test_approval_with_override_resumes_and_the_tool_uses_the_new_value(
    review_version, operator, reviewer, worker
):
    run = _start(review_version, operator, customer_id="cust_anna", amount=900000)
    worker.drain()
    request = ReviewRequest.objects.get(run=run)
    approve(
        request=request,
        reviewer=reviewer,
        overrides={"amount": 450000},
        comment="Half now, half next month",
    )
    worker.drain()
    run.refresh_from_db()
    assert run.status == "completed"
    assert run.output == {"charged": 450000}
    review_step = run.steps.get(node_id="review")
    assert review_step.output == {"amount": 450000, "customer": "cust_anna"}
    assert run.steps.get(node_id="pay").input["amount"] == 450000
    decided = run.events.get(type="review.decided")
    assert decided.data["overrides"] == [{"field": "amount", "before": 900000, "after": 450000}]
    assert verify_run(run).intact


def test_a_run_with_more_steps_than_the_limit_fails(db, monkeypatch):
    monkeypatch.setattr(interpreter, "MAX_STEPS_PER_RUN", 3)
    definition = {
        "input_schema": {"type": "object"},
        "start": "a",
        "nodes": {
            "a": {"type": "condition", "expression": "True", "then": "b", "else": "out"},
            "b": {"type": "condition", "expression": "True", "then": "a", "else": "out"},
            "out": {"type": "output", "value": None},
        },
    }
    version = make_version(definition, name="Loops")
    run = _start(version)
    engine.drive(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert "exceeded 3 steps" in run.failure_reason


def test_driving_a_finished_run_again_changes_nothing(credit_version):
    run = _start(credit_version, customer_id="cust_anna", amount=1200)
    engine.drive(run.pk)
    events = run.events.count()
    engine.drive(run.pk)
    assert Run.objects.get(pk=run.pk).steps.count() == 4
    assert run.events.count() == events


def test_a_redelivered_message_resumes_after_the_last_finished_step(credit_version):
    """Simulates a worker that died after committing step 1: the next one does not repeat it."""
    run = _start(credit_version, customer_id="cust_anna", amount=1200)
    engine.drive(run.pk)
    first = Run.objects.get(pk=run.pk).steps.get(node_id="credit")
    engine.drive(run.pk)
    assert Run.objects.get(pk=run.pk).steps.filter(node_id="credit").get() == first


def test_message_for_a_missing_run_is_dropped(db):
    engine.drive(987654321)  # nothing to do, nothing raised
