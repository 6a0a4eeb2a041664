"""The Runs list and a run's page: filters, pagination, tabs, polling, Cancel and Retry."""

import datetime
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from runs import engine
from runs.engine import interpreter
from runs.models import Run, RunEvent, Step
from runs.services import start_run
from tests.conftest import make_version
from tests.factories import force_status
from tests.tampering import tamper

PAYMENT_WITH_REVIEW = {
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "required": ["invoice_id", "customer_id", "amount", "currency"],
        "properties": {
            "invoice_id": {"type": "string", "title": "Invoice number", "minLength": 1},
            "customer_id": {"type": "string", "title": "Customer", "minLength": 1},
            "amount": {
                "type": "integer",
                "title": "Amount",
                "minimum": 1,
                "x-rapidfolio-money": {"currency_field": "currency"},
            },
            "currency": {"type": "string", "title": "Currency", "enum": ["usd", "eur"]},
        },
    },
    "start": "approval",
    "nodes": {
        "approval": {
            "type": "human_review",
            "title": "Approve invoice payment",
            "instructions": "Check the invoice before approving.",
            "show": {
                "invoice": "inputs.invoice_id",
                "customer": "inputs.customer_id",
                "amount": "inputs.amount",
                "currency": "inputs.currency",
            },
            "overridable": {"amount": {"type": "integer", "minimum": 1}},
            "next": "charge",
        },
        "charge": {
            "type": "tool",
            "tool": "stripe.create_payment_intent",
            "input": {
                "amount": "steps.approval.output.amount",
                "currency": "inputs.currency",
                "customer": "inputs.customer_id",
            },
            "retry": {"max_attempts": 1},
            "next": "paid",
        },
        "paid": {
            "type": "output",
            "value": {
                "payment_intent": "steps.charge.output.id",
                "amount": "steps.charge.output.amount",
            },
        },
    },
}

# One tool call, no review: a customer containing "timeout" fails transiently (no retries
# left with max_attempts 1), "blocked" fails permanently.
CREDIT_CHECK = {
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "required": ["customer_id"],
        "properties": {"customer_id": {"type": "string", "title": "Customer", "minLength": 1}},
    },
    "start": "credit",
    "nodes": {
        "credit": {
            "type": "tool",
            "tool": "credit.check",
            "input": {"customer_id": "inputs.customer_id"},
            "retry": {"max_attempts": 1},
            "next": "done",
        },
        "done": {"type": "output", "value": {"score": "steps.credit.output.score"}},
    },
}

HTMX = {"HTTP_HX_REQUEST": "true"}


def start(version, user, inputs, environment="sandbox", drive=True) -> Run:
    run = start_run(
        version=version, environment=environment, inputs=inputs, type="manual", user=user
    )
    if drive:
        engine.drive(run.pk)
    return Run.objects.get(pk=run.pk)


@pytest.fixture
def credit_version(db):
    return make_version(CREDIT_CHECK, name="Credit check")


@pytest.fixture
def review_version(db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


@pytest.fixture
def completed_run(credit_version, operator):
    return start(credit_version, operator, {"customer_id": "cust_anna"})


@pytest.fixture
def transient_run(credit_version, operator):
    return start(credit_version, operator, {"customer_id": "cust_timeout"})


@pytest.fixture
def permanent_run(credit_version, operator):
    return start(credit_version, operator, {"customer_id": "cust_blocked"})


@pytest.fixture
def paused_run(review_version, operator):
    inputs = {"invoice_id": "INV-1001", "customer_id": "cus_acme", "amount": 700000}
    return start(review_version, operator, {**inputs, "currency": "usd"})


def body(response) -> str:
    return response.content.decode()


def without_title(page: str) -> str:
    """A swap's answer after the <title> it brings first (htmx sets document.title from it)."""
    return re.sub(r"^<title>[^<]*</title>\s*", "", page.lstrip())


def detail_url(run, tab=None):
    if tab is None:
        return reverse("runs:detail", args=[run.public_id])
    return reverse("runs:tab", args=[run.public_id, tab])


# --- Runs list ------------------------------------------------------------------------------
def test_runs_list_shows_the_columns(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(reverse("runs:list")))
    for column in ("Run", "Procedure", "Environment", "Status", "Type", "Started", "Duration"):
        assert f'<th scope="col">{column}</th>' in page
    assert completed_run.public_id in page
    assert 'Credit check <span class="muted">v1</span>' in page
    assert 'class="badge status-completed"' in page


def test_runs_list_filters_by_several_statuses(client, operator, completed_run, transient_run):
    cancelled = force_status(
        start(completed_run.version, operator, {"customer_id": "c"}, drive=False), "cancelled"
    )
    client.force_login(operator)
    page = body(client.get(reverse("runs:list"), {"status": ["failed", "cancelled"]}))
    assert transient_run.public_id in page
    assert cancelled.public_id in page
    assert completed_run.public_id not in page


def test_runs_list_filters_by_procedure_environment_and_type(
    client, live_operator, completed_run, paused_run
):
    live = start(completed_run.version, live_operator, {"customer_id": "x"}, "live", drive=False)
    client.force_login(live_operator)
    page = body(
        client.get(
            reverse("runs:list"),
            {
                "procedure": completed_run.procedure.public_id,
                "environment": "live",
                "type": "manual",
            },
        )
    )
    assert live.public_id in page
    assert completed_run.public_id not in page
    assert paused_run.public_id not in page


def test_runs_list_filters_by_created_date_range(client, operator, credit_version):
    old = start(credit_version, operator, {"customer_id": "a"}, drive=False)
    new = start(credit_version, operator, {"customer_id": "b"}, drive=False)
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=10))
    client.force_login(operator)
    today = timezone.localdate().isoformat()
    page = body(client.get(reverse("runs:list"), {"created_from": today, "created_to": today}))
    assert new.public_id in page
    assert old.public_id not in page


def test_filter_form_swaps_only_the_results_and_pushes_the_url(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(reverse("runs:list")))
    form = re.search(r'<form id="run-filters"[^>]*>', page).group(0)
    assert 'hx-target="#run-results"' in form
    assert 'hx-push-url="true"' in form
    assert 'method="get"' in form  # a plain GET form with JavaScript off
    assert '<button type="submit" class="button primary">Apply filters</button>' in page


def test_htmx_filter_request_returns_only_the_results(client, operator, completed_run):
    client.force_login(operator)
    response = client.get(reverse("runs:list"), {"status": "completed"}, **HTMX)
    page = body(response)
    assert page.lstrip().startswith('<section id="run-results"')
    assert "<html" not in page and "run-filters" not in page
    assert completed_run.public_id in page
    assert "HX-Request" in response.headers["Vary"]


def test_htmx_history_restore_gets_the_whole_page(client, operator, completed_run):
    client.force_login(operator)
    response = client.get(
        reverse("runs:list"),
        {"status": "completed"},
        HTTP_HX_HISTORY_RESTORE_REQUEST="true",
        **HTMX,
    )
    assert "<html" in body(response)
    assert "run-filters" in body(response)


def test_filtered_url_reloads_with_the_filters_applied(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(reverse("runs:list") + "?status=completed&environment=sandbox"))
    assert re.search(r'<input[^>]*value="completed"[^>]*checked', page)
    assert '<option value="sandbox" selected>' in page
    assert completed_run.public_id in page


def test_older_runs_link_carries_filters_and_cursor(client, operator, credit_version, monkeypatch):
    monkeypatch.setattr("runs.views.PAGE_SIZE", 2)
    runs = [
        start(credit_version, operator, {"customer_id": f"c{i}"}, drive=False) for i in range(3)
    ]
    client.force_login(operator)
    first = body(client.get(reverse("runs:list"), {"status": "pending"}))
    assert runs[2].public_id in first and runs[1].public_id in first
    assert runs[0].public_id not in first
    link = re.search(r'<a class="button" href="([^"]+)"[^>]*>Older runs →</a>', first).group(1)
    link = link.replace("&amp;", "&")
    assert "status=pending" in link and "cursor=" in link
    second = body(client.get(reverse("runs:list") + link))
    assert runs[0].public_id in second
    assert runs[2].public_id not in second
    assert "Older runs" not in second


def test_empty_results_say_so_and_offer_to_clear_filters(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(reverse("runs:list"), {"status": "cancelled"}))
    assert "No runs match these filters." in page
    assert f'href="{reverse("runs:list")}">Clear the filters</a>' in page


def test_invalid_filter_value_shows_a_message_not_an_error(client, operator, completed_run):
    client.force_login(operator)
    response = client.get(reverse("runs:list"), {"status": "exploded", "created_from": "soon"})
    assert response.status_code == 200
    page = body(response)
    assert "Some filters are not valid" in page
    assert "Select a valid choice" in page
    assert completed_run.public_id not in page


def test_end_date_before_start_date_is_explained(client, operator, completed_run):
    client.force_login(operator)
    page = body(
        client.get(reverse("runs:list"), {"created_from": "2025-02-02", "created_to": "2025-01-01"})
    )
    assert "The end date is before the start date." in page


def test_invalid_cursor_shows_a_message_not_an_error(client, operator, completed_run):
    client.force_login(operator)
    response = client.get(reverse("runs:list"), {"cursor": "not-a-cursor!!"})
    assert response.status_code == 200
    page = body(response)
    assert "The page cursor is not valid" in page
    assert "Go to the newest runs" in page


# --- Run page: header and tabs --------------------------------------------------------------
def test_run_header_shows_status_procedure_environment_starter_and_integrity(
    client, operator, completed_run
):
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run)))
    assert '<span class="badge status-completed" id="run-status">Completed</span>' in page
    assert 'Credit check</a> <span class="muted">version 1</span>' in page
    assert "env-sandbox" in page and ">Manual<" in page
    assert "user olivia" in page
    integrity_url = reverse("runs:integrity", args=[completed_run.public_id])
    assert f'hx-get="{integrity_url}" hx-trigger="load"' in page  # checked in its own request
    badge = body(client.get(integrity_url, HTTP_HX_REQUEST="true"))
    assert '<span class="badge ok">Verified</span>' in badge


def test_run_header_shows_broken_integrity(client, operator, paused_run):
    # An edit behind the ORM's back and past the triggers, as a superuser could make.
    tamper(
        "runs_run",
        "UPDATE runs_run SET inputs = %s WHERE id = %s",
        [json.dumps({"customer_id": "someone-else"}), paused_run.pk],
    )
    client.force_login(operator)
    integrity_url = reverse("runs:integrity", args=[paused_run.public_id])
    badge = body(client.get(integrity_url, HTTP_HX_REQUEST="true"))
    assert '<span class="badge bad">Broken</span>' in badge
    assert "differ from what" in badge
    page = body(client.get(integrity_url))  # without JavaScript: the whole page, verified
    assert '<span class="badge bad">Broken</span>' in page and 'id="run-status"' in page


def test_run_page_has_the_five_tabs_each_with_its_own_url(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run)))
    for tab, label in [
        (None, "Overview"),
        ("inputs", "Inputs"),
        ("step-log", "Step Log"),
        ("output", "Output"),
        ("events", "Events"),
    ]:
        url = detail_url(completed_run, tab)
        assert re.search(
            rf'<a href="{re.escape(url)}" hx-get="{re.escape(url)}"[^>]*>{label}</a>', page
        )


def test_tab_url_opens_the_whole_page_with_that_tab(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run, "step-log")))
    assert "<html" in page
    assert '<h2 class="tab-title">Step Log</h2>' in page
    assert 'aria-current="page">Step Log</a>' in page


def test_htmx_tab_request_returns_only_the_tab(client, operator, completed_run):
    client.force_login(operator)
    response = client.get(detail_url(completed_run, "events"), HTTP_HX_TARGET="run-tabs", **HTMX)
    page = body(response)
    assert without_title(page).startswith('<section id="run-tabs"')
    assert "<html" not in page and "run-header" not in page
    assert '<h2 class="tab-title">Events</h2>' in page


def test_unknown_tab_is_not_found(client, operator, completed_run):
    client.force_login(operator)
    response = client.get(f"/runs/{completed_run.public_id}/secrets/")
    assert response.status_code == 404
    assert "Not found" in body(response)


def test_unknown_run_is_not_found(client, operator):
    client.force_login(operator)
    assert client.get("/runs/run_doesnotexist/").status_code == 404


def test_inputs_tab_shows_the_inputs(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run, "inputs")))
    assert "cust_anna" in page


def test_step_log_shows_tool_request_and_response_pretty_printed_in_order(
    client, operator, completed_run
):
    step = Step.objects.get(run=completed_run, node_id="credit")
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run, "step-log")))
    assert 'id="step-1"' in page and 'id="step-2"' in page
    assert page.index('id="step-1"') < page.index('id="step-2"')
    pretty_request = json.dumps(json.loads(step.request, object_pairs_hook=dict), indent=2)
    assert "<summary>Request sent</summary>" in page
    assert "<summary>Response received</summary>" in page
    from django.utils.html import escape

    assert escape(pretty_request) in page
    assert "attempt 1" in page
    assert "credit.check" in page


def test_output_tab_shows_the_output(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run, "output")))
    assert "&quot;score&quot;" in page


def test_output_tab_of_failed_run_links_to_the_failing_step(client, operator, permanent_run):
    client.force_login(operator)
    page = body(client.get(detail_url(permanent_run, "output")))
    assert permanent_run.failure_reason in page or "frozen" in page
    assert "Permanent" in page
    anchor = f"{detail_url(permanent_run, 'step-log')}#step-{permanent_run.failed_step.sequence}"
    assert f'href="{anchor}"' in page


def test_events_tab_shows_the_timeline(client, operator, transient_run):
    client.force_login(operator)
    page = body(client.get(detail_url(transient_run, "events")))
    assert "Run created" in page
    assert "Status changed" in page
    assert "Step recorded" in page
    assert page.count('<li class="event">') == RunEvent.objects.filter(run=transient_run).count()


def test_webhook_delivery_events_are_rendered_generically(client, operator, completed_run):
    from runs.writer import append_event

    append_event(
        completed_run,
        "webhook.delivery",
        actor="system:webhooks",
        data={"endpoint": "https://example.com/hook", "status": 200, "attempt": 1},
    )
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run, "events")))
    assert "Webhook delivery" in page
    assert "https://example.com/hook" in page
    assert "<dt>status</dt>" in page


# --- Polling --------------------------------------------------------------------------------
def test_unfinished_run_page_polls_every_two_seconds(client, operator, credit_version):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(operator)
    page = body(client.get(detail_url(run)))
    assert 'hx-trigger="every 2s"' in page


def test_finished_run_page_does_not_poll(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run)))
    assert "every 2s" not in page


def test_poll_without_changes_answers_no_content(client, operator, credit_version):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(operator)
    page = body(client.get(detail_url(run)))
    poll_url = re.search(r'class="poller" hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
    response = client.get(poll_url, HTTP_HX_TARGET="run-page", **HTMX)
    assert response.status_code == 204


def test_poll_after_a_change_returns_the_run_page_partial_without_poller_once_finished(
    client, operator, credit_version
):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(operator)
    page = body(client.get(detail_url(run)))
    poll_url = re.search(r'class="poller" hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
    engine.drive(run.pk)
    response = client.get(poll_url, HTTP_HX_TARGET="run-page", **HTMX)
    partial = body(response)
    assert response.status_code == 200
    assert without_title(partial).startswith('<div id="run-page"')
    assert "Completed" in partial
    assert "every 2s" not in partial


# --- Cancel ---------------------------------------------------------------------------------
def test_cancel_button_is_offered_on_unfinished_runs_with_a_confirmation(
    client, operator, credit_version
):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(operator)
    page = body(client.get(detail_url(run)))
    assert re.search(
        r'<button type="submit" class="button danger" data-confirm="[^"]+">Cancel</button>', page
    )


def test_cancel_button_is_not_offered_on_finished_runs(client, operator, completed_run):
    client.force_login(operator)
    assert ">Cancel</button>" not in body(client.get(detail_url(completed_run)))


def test_cancel_without_javascript_redirects_to_the_run(client, operator, credit_version):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(operator)
    response = client.post(reverse("runs:cancel", args=[run.public_id]), {"tab": "events"})
    assert response.status_code == 302
    assert response.url == detail_url(run, "events")
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert "was cancelled" in body(client.get(response.url))


def test_cancel_with_htmx_swaps_the_run_page(client, operator, credit_version):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(operator)
    response = client.post(
        reverse("runs:cancel", args=[run.public_id]), HTTP_HX_TARGET="run-page", **HTMX
    )
    page = body(response)
    assert response.status_code == 200
    assert without_title(page).startswith('<div id="run-page"')
    assert '<span class="badge status-cancelled" id="run-status">Cancelled</span>' in page
    assert "every 2s" not in page


def test_reviewer_cannot_cancel_and_gets_a_403_that_says_why(
    client, reviewer, credit_version, operator
):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(reviewer)
    assert ">Cancel</button>" not in body(client.get(detail_url(run)))
    response = client.post(reverse("runs:cancel", args=[run.public_id]))
    assert response.status_code == 403
    assert "You do not have permission to cancel runs." in body(response)
    run.refresh_from_db()
    assert run.status == "pending"


def test_htmx_403_swaps_only_the_reason_into_the_flash_area(
    client, reviewer, operator, credit_version
):
    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client.force_login(reviewer)
    response = client.post(reverse("runs:cancel", args=[run.public_id]), **HTMX)
    assert response.status_code == 403
    assert response.headers["HX-Retarget"] == "#flash"
    assert "<html" not in body(response)
    assert "You do not have permission to cancel runs." in body(response)


def test_cancelling_a_finished_run_explains_the_conflict(client, operator, completed_run):
    client.force_login(operator)
    response = client.post(reverse("runs:cancel", args=[completed_run.public_id]), **HTMX)
    assert response.status_code == 409
    assert "can no longer be cancelled" in body(response)


def test_post_without_csrf_token_is_refused(operator, credit_version):
    from rapidfolio.test_client import Client

    run = start(credit_version, operator, {"customer_id": "c"}, drive=False)
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(reverse("runs:cancel", args=[run.public_id]), **HTMX)
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == "pending"


def test_htmx_requests_send_the_csrf_token_header(client, operator, completed_run):
    client.force_login(operator)
    page = body(client.get(detail_url(completed_run)))
    assert re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"[^\"]+\"\}'>", page)


# --- Retry ----------------------------------------------------------------------------------
def test_retry_is_offered_only_for_transient_failures(
    client, operator, transient_run, permanent_run, completed_run
):
    client.force_login(operator)
    assert ">Retry</button>" in body(client.get(detail_url(transient_run)))
    assert ">Retry</button>" not in body(client.get(detail_url(permanent_run)))
    assert ">Retry</button>" not in body(client.get(detail_url(completed_run)))


def test_retry_starts_a_new_run_and_links_both_ways(client, operator, transient_run):
    client.force_login(operator)
    response = client.post(reverse("runs:retry", args=[transient_run.public_id]), **HTMX)
    retry = Run.objects.get(retry_of=transient_run)
    assert response.headers["HX-Redirect"] == detail_url(retry)  # lands on the new run
    retry_page = body(client.get(detail_url(retry)))
    assert f"Run {retry.public_id} started as a retry of {transient_run.public_id}." in retry_page
    assert "Retry of" in retry_page and transient_run.public_id in retry_page
    page = body(client.get(detail_url(transient_run)))
    assert "Retried as" in page and retry.public_id in page
    assert ">Retry</button>" not in page


def test_forced_retry_of_permanent_failure_is_refused(client, operator, permanent_run):
    client.force_login(operator)
    response = client.post(reverse("runs:retry", args=[permanent_run.public_id]))
    assert response.status_code == 302
    assert "permanent" in body(client.get(response.url))
    assert not Run.objects.filter(retry_of=permanent_run).exists()


def test_get_on_an_action_url_is_not_allowed(client, operator, transient_run):
    client.force_login(operator)
    assert client.get(reverse("runs:retry", args=[transient_run.public_id])).status_code == 405


@pytest.fixture
def long_run(db, monkeypatch):
    """A run that loops until the engine's step limit stops it: 250 steps."""
    monkeypatch.setattr(interpreter, "MAX_STEPS_PER_RUN", 250)
    version = make_version(
        {
            "input_schema": {"type": "object"},
            "start": "a",
            "nodes": {
                "a": {"type": "condition", "expression": "True", "then": "b", "else": "out"},
                "b": {"type": "condition", "expression": "True", "then": "a", "else": "out"},
                "out": {"type": "output", "value": None},
            },
        },
        name="Loops",
    )
    run = start_run(version=version, environment="sandbox", type="api", inputs={})
    engine.drive(run.pk)
    return Run.objects.get(pk=run.pk)


def test_step_log_of_a_long_run_is_read_fifty_steps_at_a_time(client, operator, long_run):
    client.force_login(operator)
    first = body(client.get(detail_url(long_run, "step-log")))
    assert "Steps 1–50 of 250" in first
    assert 'id="step-50"' in first and 'id="step-51"' not in first
    later = f"{detail_url(long_run, 'step-log')}?start=51"
    assert f'href="{later}"' in first
    second = body(client.get(later))
    assert "Steps 51–100 of 250" in second
    assert 'id="step-51"' in second and 'id="step-1"' not in second
    assert "← Earlier steps" in second


def test_overview_links_the_last_step_to_the_page_that_shows_it(client, operator, long_run):
    client.force_login(operator)
    page = body(client.get(detail_url(long_run)))
    assert "250 recorded" in page
    assert f'href="{detail_url(long_run, "step-log")}?start=201#step-250"' in page


def test_a_step_log_page_out_of_range_or_malformed_is_not_an_error(client, operator, long_run):
    client.force_login(operator)
    assert client.get(f"{detail_url(long_run, 'step-log')}?start=abc").status_code == 200
    page = body(client.get(f"{detail_url(long_run, 'step-log')}?start=9999"))
    assert "Steps 201–250 of 250" in page


def test_events_of_a_long_run_are_read_a_hundred_at_a_time(client, operator, long_run):
    client.force_login(operator)
    total = long_run.events.count()
    first = body(client.get(detail_url(long_run, "events")))
    assert f"Events 1–100 of {total}" in first
    assert first.count('class="event"') == 100
    last_start = ((total - 1) // 100) * 100 + 1
    last = body(client.get(f"{detail_url(long_run, 'events')}?start={last_start}"))
    assert f"Events {last_start}–{total} of {total}" in last
    assert "exceeded 250 steps" in last  # the final event: the step limit failed the run
