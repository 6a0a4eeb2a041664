"""The picture of a run (issue 16, point 5): the procedure's nodes in reading order with what
happened at each, a node's retries grouped under it, and business outcomes (a declined credit
line) recorded and shown as answers, not as technical failures."""

import copy
import time

import pytest
import yaml
from django.db import transaction
from django.test import Client
from django.urls import reverse

from procedures.definition import validate_definition
from procedures.demo import DEMO_DIR
from reviews.models import ReviewRequest
from reviews.services import approve
from runs import engine, picture
from runs.api_keys import create_api_key
from runs.dispatch import run_payload
from runs.errors import IllegalTransition, RetryNotAllowed
from runs.integrity import verify_run
from runs.models import Run, RunEvent
from runs.picture import Jump, run_picture
from runs.services import retry_run, start_run
from runs.writer import RunWriter
from tests.conftest import make_version

# The demo's retries wait a second and more; here they wait a hundredth of one.
FAST_RETRY = {"max_attempts": 3, "backoff_seconds": 0.01, "max_backoff_seconds": 0.02}
BUREAU_DOWN = "the credit bureau is temporarily unavailable"


def demo_definition(name: str) -> tuple[str, dict]:
    document = yaml.safe_load((DEMO_DIR / f"{name}.yaml").read_text())
    definition = copy.deepcopy(document["definition"])
    for node in definition["nodes"].values():
        if "retry" in node:
            node["retry"] = FAST_RETRY
    return document["name"], definition


def demo_version(name: str):
    title, definition = demo_definition(name)
    return make_version(definition, name=title)


def finish(run: Run) -> Run:
    """Drive the run until it stops, waiting out its (short) retry backoffs."""
    for _ in range(50):
        engine.drive(run.pk)
        run.refresh_from_db()
        if run.status not in ("pending", "running"):
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run.public_id} is still {run.status}")


def credit_run(customer_id: str, requested_amount: int = 100_000) -> Run:
    run = start_run(
        version=demo_version("credit_check"),
        environment="sandbox",
        type="api",
        inputs={
            "customer_id": customer_id,
            "email": "pat@example.com",
            "requested_amount": requested_amount,
            "currency": "USD",
        },
    )
    return finish(run)


def picture_of(run: Run):
    review = run.review_requests.order_by("-created_at").first()
    waiting = review.node_id if review and run.status == "awaiting_review" else ""
    return run_picture(run, waiting_node_id=waiting)


def outline(items) -> list:
    """The picture as (node, outcome) in reading order, each branch as {label: [...]}."""
    lines = []
    for item in items:
        if isinstance(item, Jump):
            lines.append(("back to", item.target))
            continue
        lines.append((item.id, item.outcome))
        if item.branches:
            lines.append({branch.label: outline(branch.items) for branch in item.branches})
    return lines


# The sandbox bureau's scores (procedures/tools/simulated.py): cara 676, dan 427; a customer id
# with "flaky" fails twice before it answers, one with "blocked" is refused for good.
@pytest.fixture
def completed(db):
    return credit_run("cust_cara")


@pytest.fixture
def retried(db):
    return credit_run("cust_flaky_1")


@pytest.fixture
def declined(db):
    return credit_run("cust_dan")


# --- reading order and outcomes ---------------------------------------------------------------
def test_a_completed_run_reads_in_the_definitions_order_with_its_branches(completed):
    assert completed.status == "completed"
    shown = picture_of(completed)
    assert outline(shown.items) == [
        ("credit", "succeeded"),
        ("decide", "succeeded"),
        {
            "If true": [("approved", "succeeded")],
            "If false": [("tell_customer", "not_taken"), ("declined", "not_taken")],
        },
    ]
    assert shown.nodes["decide"].label == "True: went to approved"
    assert [b.taken for b in shown.nodes["decide"].branches] == [True, False]
    assert shown.nodes["credit"].label == "Succeeded"
    assert not shown.nodes["credit"].lists_attempts


def test_a_node_retried_twice_is_one_node_that_succeeded_on_attempt_3(retried):
    assert retried.status == "completed"
    credit = picture_of(retried).nodes["credit"]
    assert credit.outcome == "succeeded"
    assert credit.label == "Succeeded on attempt 3"
    assert [(a.number, a.status) for a in credit.attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert [(a.error_kind, a.error) for a in credit.attempts if a.failed] == [
        ("transient", f"{BUREAU_DOWN} (simulated, attempt 1)"),
        ("transient", f"{BUREAU_DOWN} (simulated, attempt 2)"),
    ]
    assert all(a.duration_ms is not None for a in credit.attempts)
    assert credit.lists_attempts


def test_a_permanently_failed_run_stops_at_its_failed_node(db):
    run = credit_run("cust_blocked")
    assert (run.status, run.failure_kind) == ("failed", "permanent")
    assert outline(picture_of(run).items) == [
        ("credit", "failed"),
        ("decide", "not_reached"),
        {
            "If true": [("approved", "not_reached")],
            "If false": [("tell_customer", "not_reached"), ("declined", "not_reached")],
        },
    ]
    assert picture_of(run).nodes["credit"].label == "Failed"


def test_a_declined_credit_check_is_a_business_outcome_not_a_failure(declined):
    shown = picture_of(declined)
    assert outline(shown.items) == [
        ("credit", "succeeded"),
        ("decide", "succeeded"),
        {
            "If true": [("approved", "not_taken")],
            "If false": [("tell_customer", "succeeded"), ("declined", "business")],
        },
    ]
    assert shown.nodes["declined"].label == "Declined"
    assert shown.nodes["decide"].label == "False: went to tell_customer"


def test_a_run_waiting_for_review_shows_the_review_node_waiting(db):
    run = start_run(
        version=demo_version("pay_invoice"),
        environment="sandbox",
        type="api",
        inputs={
            "invoice_id": "INV-2041",
            "customer_id": "cus_acme",
            "amount": 2_400_000,
            "currency": "usd",
        },
    )
    run = finish(run)
    assert run.status == "awaiting_review"
    assert outline(picture_of(run).items) == [
        ("needs_approval", "succeeded"),
        {
            "If true": [
                ("approve_payment", "waiting"),
                ("charge_approved", "not_reached"),
                ("paid_after_approval", "not_reached"),
            ],
            "If false": [("charge", "not_taken"), ("paid", "not_taken")],
        },
    ]
    assert picture_of(run).nodes["approve_payment"].label == "Waiting for review"


def test_branches_that_meet_again_go_on_as_one_line(db):
    run = start_run(
        version=demo_version("close_account"),
        environment="sandbox",
        type="api",
        inputs={
            "account_id": "acct_1001",
            "reason": "customer_request",
            "customer_email": "pat@example.com",
        },
    )
    run = finish(run)
    items = outline(picture_of(run).items)
    # The fraud branch goes through compliance; both go on at `close`, drawn once after them.
    assert items[0] == ("is_fraud", "succeeded")
    assert items[1] == {"If true": [("compliance_review", "not_taken")], "If false": []}
    assert [node for node, _ in items[2:]] == ["close", "confirm", "done"]


def test_a_loop_back_is_drawn_as_a_jump_not_twice():
    nodes = {
        "check": {
            "type": "tool",
            "tool": "credit.check",
            "input": {"customer_id": "'cust_cara'"},
            "next": "again",
        },
        "again": {"type": "condition", "expression": "true", "then": "check", "else": "done"},
        "done": {"type": "output", "value": {}},
    }
    definition = {"start": "check", "nodes": nodes}
    shown = picture.PictureNode  # the layout is pure: build it without a run
    laid_out = picture._layout(
        "check", {k: shown(k, v["type"], v) for k, v in nodes.items()}, taken={}
    )
    assert outline(laid_out) == [
        ("check", "not_reached"),
        ("again", "not_reached"),
        {"If true": [("back to", "check")], "If false": [("done", "not_reached")]},
    ]
    assert not validate_definition({**definition, "input_schema": {"type": "object"}})


# --- the pages ------------------------------------------------------------------------------
def overview(client, user, run) -> str:
    client.force_login(user)
    response = client.get(reverse("runs:detail", args=[run.public_id]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_overview_highlights_the_path_and_links_each_node_to_its_steps(
    client, operator, retried
):
    html = overview(client, operator, retried)
    steps = {s.node_id: s.sequence for s in retried.steps.order_by("-sequence")}
    first_credit = retried.steps.filter(node_id="credit").order_by("sequence").first()
    step_log = reverse("runs:tab", args=[retried.public_id, "step-log"])
    assert 'class="pnode pnode-succeeded on-path"' in html
    assert 'class="pnode pnode-not_taken off-path"' in html  # tell_customer, declined
    assert f'href="{step_log}#step-{first_credit.sequence}">credit</a>' in html
    assert f'href="{step_log}#step-{steps["approved"]}">approved</a>' in html
    assert "Succeeded on attempt 3" in html
    assert html.count(BUREAU_DOWN) == 2  # each failed attempt's error, listed under its node
    assert "✓ Taken" in html and "not taken" in html


def test_the_step_log_groups_a_nodes_attempts_under_it(client, operator, retried):
    client.force_login(operator)
    html = client.get(reverse("runs:tab", args=[retried.public_id, "step-log"])).content.decode()
    assert html.count('<li class="step-group') == 1
    assert "Succeeded on attempt 3" in html
    assert html.count('class="attempt-item"') == 2
    assert html.count("step-failed-item") == 0  # no red Failed rows for attempts that retried
    for step in retried.steps.all():
        assert f'id="step-{step.sequence}"' in html  # every step keeps its anchor


def test_a_declined_run_reads_declined_in_a_neutral_badge_with_its_reason(
    client, operator, declined
):
    html = overview(client, operator, declined)
    badge = '<span class="visually-hidden">Business outcome: </span>Declined</span>'
    assert f'<span class="badge outcome">{badge}' in html
    assert "the procedure's answer, not a technical failure" in html
    assert "Credit score below 650 or amount above the recommended limit" in html
    assert "badge bad plain" not in html  # no red failure-kind chip
    assert ">Retry</button>" not in html
    assert "pnode pnode-business on-path" in html


# --- the business outcome in the record -------------------------------------------------------
def test_a_business_outcome_is_recorded_on_the_run_its_event_and_its_step(declined):
    assert (declined.status, declined.failure_kind, declined.outcome) == (
        "failed",
        "business",
        "declined",
    )
    assert declined.failed_step.node_id == "declined"
    assert declined.failed_step.error_kind == "business"
    assert declined.failed_step.output == {"outcome": "declined"}
    ending = RunEvent.objects.filter(run=declined, type="run.status_changed").last()
    assert ending.data["to"] == "failed" and ending.data["outcome"] == "declined"
    assert verify_run(declined).intact


def test_the_failed_webhook_of_a_declined_run_names_its_outcome(declined):
    payload = run_payload(declined, "failed")
    assert payload["outcome"] == "declined"
    assert payload["failure"]["kind"] == "business"


def test_a_declined_run_cannot_be_retried(declined, operator):
    with pytest.raises(RetryNotAllowed, match="business outcome 'declined'"):
        retry_run(run=declined, user=operator)


def test_status_filters_still_find_a_declined_run(client, operator, declined):
    client.force_login(operator)
    html = client.get(reverse("runs:list") + "?status=failed").content.decode()
    assert declined.public_id in html


def test_an_output_node_may_name_a_business_outcome_of_a_completed_run(db):
    title, definition = demo_definition("credit_check")
    definition["nodes"]["approved"]["outcome"] = "approved"
    run = start_run(
        version=make_version(definition, name="Credit with an approved outcome"),
        environment="sandbox",
        type="api",
        inputs={"customer_id": "cust_cara", "email": "c@example.com", "requested_amount": 100},
    )
    run = finish(run)
    assert (run.status, run.failure_kind, run.outcome) == ("completed", "", "approved")
    assert picture_of(run).nodes["approved"].label == "Approved"
    assert verify_run(run).intact


def test_a_business_failure_must_name_its_outcome(simple_version):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        type="api",
        inputs={"amount": 5, "currency": "usd"},
    )
    with transaction.atomic():
        writer = RunWriter.lock(run)
        writer.transition("running", actor="test")
        with pytest.raises(IllegalTransition, match="exactly when it names one"):
            writer.transition("failed", actor="test", reason="no", failure_kind="business")
        with pytest.raises(IllegalTransition, match="exactly when it names one"):
            writer.transition(
                "failed", actor="test", reason="no", failure_kind="permanent", outcome="declined"
            )


def test_the_api_exposes_the_business_outcome(declined):
    _, key = create_api_key(name="Credit backend", environment="sandbox")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = api.get(f"/v1/runs/{declined.public_id}").json()
    assert body["status"] == "failed"
    assert body["outcome"] == "declined"
    assert body["failure"]["kind"] == "business"
    [listed] = [r for r in api.get("/v1/runs").json()["runs"] if r["id"] == declined.public_id]
    assert listed["outcome"] == "declined" and listed["failure_kind"] == "business"


def test_the_openapi_document_describes_the_outcome(client, db):
    schemas = client.get("/v1/openapi.json").json()["components"]["schemas"]
    for name in ("RunDetail", "RunSummary"):
        assert "outcome" in schemas[name]["properties"], name
        assert "business" in schemas[name]["properties"]["outcome"]["description"]
    assert "business" in schemas["Failure"]["properties"]["kind"]["enum"]


# --- the definition ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ("Declined!", "'outcome' must be a short lower-case word such as declined"),
        ("", "'outcome' must be a short lower-case word"),
        (7, "'outcome' must be a short lower-case word"),
        ("d" * 51, "'outcome' must be at most 50 characters"),
        ("failed", "'outcome' 'failed' is a run status or failure kind already"),
    ],
)
def test_the_definition_check_rejects_a_bad_outcome(outcome, message):
    _, definition = demo_definition("credit_check")
    definition["nodes"]["declined"]["outcome"] = outcome
    problems = [p for p in validate_definition(definition) if p.node == "declined"]
    assert len(problems) == 1 and problems[0].message.startswith(message), problems


def test_only_fail_and_output_nodes_take_an_outcome():
    _, definition = demo_definition("credit_check")
    definition["nodes"]["tell_customer"]["outcome"] = "declined"
    [problem] = validate_definition(definition)
    assert problem.node == "tell_customer" and "unknown key 'outcome'" in problem.message


def test_the_demo_credit_check_marks_its_decline_as_a_business_outcome():
    _, definition = demo_definition("credit_check")
    assert definition["nodes"]["declined"]["outcome"] == "declined"
    assert not validate_definition(definition)


# --- the Events tab: override amounts as money --------------------------------------------
MONEY_REVIEW = {
    "input_schema": {
        "type": "object",
        "required": ["customer_id", "amount", "currency"],
        "properties": {
            "customer_id": {"type": "string"},
            "amount": {"type": "integer", "x-rapidfolio-money": {"currency_field": "currency"}},
            "currency": {"type": "string", "enum": ["USD", "JPY"]},
        },
    },
    "start": "review",
    "nodes": {
        "review": {
            "type": "human_review",
            "title": "Approve payment",
            "show": {"amount": "inputs.amount", "customer": "inputs.customer_id"},
            "overridable": {"amount": {"type": "integer", "minimum": 1}},
            "next": "done",
        },
        "done": {"type": "output", "value": {"charged": "steps.review.output.amount"}},
    },
}


@pytest.mark.parametrize(
    ("currency", "before", "after"),
    [("USD", "USD 24,000.00", "USD 20,000.00"), ("JPY", "JPY 2,400,000", "JPY 2,000,000")],
)
def test_the_events_tab_shows_override_amounts_as_money_and_keeps_the_json(
    client, operator, reviewer, currency, before, after
):
    run = start_run(
        version=make_version(MONEY_REVIEW, name="Money review"),
        environment="sandbox",
        type="manual",
        user=operator,
        inputs={"customer_id": "cust_anna", "amount": 2_400_000, "currency": currency},
    )
    engine.drive(run.pk)
    request = ReviewRequest.objects.get(run=run)
    approve(request=request, reviewer=reviewer, overrides={"amount": 2_000_000}, comment="Part")
    client.force_login(operator)
    html = client.get(reverse("runs:tab", args=[run.public_id, "events"])).content.decode()
    assert f"amount: {before} → {after}" in html.replace("\xa0", " ")  # Babel's no-break space
    decided = RunEvent.objects.get(run=run, type="review.decided")
    assert decided.data["overrides"] == [
        {"field": "amount", "before": 2_400_000, "after": 2_000_000}
    ]
