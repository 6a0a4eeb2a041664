"""Procedure pages: the list, a procedure's versions and recent runs, and the Run button."""

import re

import pytest
from django.urls import reverse

from procedures.models import Connection
from runs.models import Run
from tests.conftest import make_version
from tests.test_dashboard_runs import CREDIT_CHECK, HTMX, PAYMENT_WITH_REVIEW, body, start


@pytest.fixture
def version(db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


def run_url(version):
    return reverse("procedures:start", args=[version.procedure.public_id])


def page_url(version):
    return reverse("procedures:detail", args=[version.procedure.public_id])


VALID = {
    "invoice_id": "INV-7",
    "customer_id": "cus_acme",
    "amount": "7000.00",  # money: typed in major units, stored as 700000
    "currency": "usd",
    "environment": "sandbox",
}


def test_procedure_list_links_each_procedure(client, operator, version):
    client.force_login(operator)
    page = body(client.get(reverse("procedures:list")))
    assert f'href="{page_url(version)}"' in page
    assert "v1" in page


def test_procedure_page_shows_versions_nodes_and_definition_json(client, operator, version):
    make_version(CREDIT_CHECK, name="Pay invoice")  # version 2 becomes current
    client.force_login(operator)
    page = body(client.get(page_url(version)))
    assert "Version 2" in page and "Version 1" in page
    node = '<code class="node-id">approval</code> <span class="badge plain node-type">'
    assert node + "human_review</span>" in page
    assert "next → <code>charge</code>" in page
    assert "<code>stripe.create_payment_intent</code>" in page
    assert "<summary>Definition JSON</summary>" in page


def test_procedure_page_lists_recent_runs(client, operator, version):
    inputs = {"invoice_id": "INV-7", "customer_id": "c", "amount": 5, "currency": "usd"}
    run = start(version, operator, inputs, drive=False)
    client.force_login(operator)
    page = body(client.get(page_url(version)))
    assert run.public_id in page


def test_run_form_is_built_from_the_current_version(client, operator, version):
    client.force_login(operator)
    page = body(client.get(page_url(version)))
    assert '<label for="id_invoice_id">Invoice number' in page
    assert re.search(r'<input type="text" name="amount"[^>]*inputmode="decimal"', page)
    assert '<option value="usd">usd</option>' in page
    assert 'value="sandbox"' in page and 'value="live"' not in page  # sandbox-only operator
    assert '<span class="when-sandbox">Run</span>' in page


def test_run_form_offers_live_to_an_operator_allowed_the_live_environment(
    client, live_operator, version
):
    client.force_login(live_operator)
    page = body(client.get(page_url(version)))
    assert 'value="sandbox"' in page and 'value="live"' in page


def test_run_button_is_not_offered_without_permission(client, reviewer, version):
    client.force_login(reviewer)
    page = body(client.get(page_url(version)))
    assert "run-button" not in page
    assert "You do not have permission to start runs." in page


def test_crafted_run_without_permission_gets_403_saying_why(client, reviewer, version):
    client.force_login(reviewer)
    response = client.post(run_url(version), VALID)
    assert response.status_code == 403
    assert "You do not have permission to start runs." in body(response)
    assert not Run.objects.exists()


def test_run_starts_a_manual_run_and_goes_to_its_page(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), VALID)
    run = Run.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("runs:detail", args=[run.public_id])
    assert run.type == "manual" and run.started_by_user == operator
    assert run.inputs == {
        "invoice_id": "INV-7",
        "customer_id": "cus_acme",
        "amount": 700000,
        "currency": "usd",
    }
    assert run.status == "pending"


def test_run_with_htmx_lands_on_the_run_as_a_whole_page(client, live_operator, version):
    client.force_login(live_operator)
    response = client.post(run_url(version), VALID, **HTMX)
    run = Run.objects.get()
    assert run.environment == "sandbox"  # live asks for a confirmation first (below)
    assert response.status_code == 200
    # HX-Redirect, not HX-Location: the browser loads the run page itself, header and all
    # (tests/test_run_landing.py).
    assert response.headers["HX-Redirect"] == reverse("runs:detail", args=[run.public_id])


def test_invalid_run_form_shows_errors_beside_fields(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), {**VALID, "amount": "0", "invoice_id": ""}, **HTMX)
    assert response.status_code == 422
    page = body(response)
    assert page.lstrip().startswith('<div id="run-form"')
    assert "Enter at least USD\u00a00.01." in page
    assert "This field is required." in page
    assert not Run.objects.exists()


def test_schema_errors_from_the_service_are_mapped_onto_fields(client, operator):
    definition = {
        **PAYMENT_WITH_REVIEW,
        "input_schema": {
            **PAYMENT_WITH_REVIEW["input_schema"],
            "properties": {
                **PAYMENT_WITH_REVIEW["input_schema"]["properties"],
                # A keyword the form does not model is still enforced by start_run.
                "amount": {"type": "integer", "title": "Amount (cents)", "multipleOf": 100},
            },
        },
    }
    version = make_version(definition, name="Round amounts")
    client.force_login(operator)
    response = client.post(run_url(version), {**VALID, "amount": "150"})
    assert response.status_code == 422
    page = body(response)
    assert re.search(r"has-error[^>]*>.*150 is not a multiple of 100", page, re.S)
    assert not Run.objects.exists()


def test_unknown_procedure_is_not_found(client, operator):
    client.force_login(operator)
    assert client.get("/procedures/proc_nope/").status_code == 404


# --- money and live runs (docs/money.md) ----------------------------------------------------
@pytest.fixture
def stripe_live(db):
    connection = Connection.objects.create(
        integration="stripe", environment="live", name="Acme Stripe (live)"
    )
    connection.set_secret("sk_live_not_a_real_key")
    connection.save()
    return connection


LIVE = {**VALID, "amount": "24000.00", "environment": "live"}


def confirmation_token(page: str) -> str:
    return re.search(r'name="live_confirmation" value="([^"]+)"', page).group(1)


def test_run_form_stores_an_amount_typed_in_major_units_as_minor_units(client, operator, version):
    client.force_login(operator)
    client.post(run_url(version), {**VALID, "amount": "24000.00"})
    assert Run.objects.get().inputs["amount"] == 2400000


def test_run_form_refuses_more_decimals_than_the_currency_has(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), {**VALID, "amount": "24,000.001"}, **HTMX)
    assert response.status_code == 422
    assert re.search(r"has-error[^>]*>.*at most 2 decimal places", body(response), re.S)
    assert not Run.objects.exists()


def test_live_without_a_live_connection_is_refused_naming_it(client, live_operator, version):
    client.force_login(live_operator)
    response = client.post(run_url(version), LIVE, **HTMX)
    assert response.status_code == 422
    page = body(response)
    assert re.search(r"has-error[^>]*>.*needs a live connection for “stripe”", page, re.S)
    assert "stripe.create_payment_intent" in page
    assert not Run.objects.exists()


def test_the_form_says_before_submitting_that_live_is_unavailable(client, live_operator, version):
    client.force_login(live_operator)
    page = body(client.get(page_url(version)))
    assert 'class="live-notice"' in page
    assert 'class="live-unavailable">Live is not available' in page


def test_live_run_asks_for_a_confirmation_naming_environment_connection_and_amount(
    client, live_operator, version, stripe_live
):
    client.force_login(live_operator)
    response = client.post(run_url(version), LIVE, **HTMX)
    assert response.status_code == 200
    page = body(response)
    assert page.lstrip().startswith('<div id="run-form"')
    assert "Start a live run of Pay invoice for USD\u00a024,000.00?" in page
    assert "Environment: <strong>Live</strong>" in page
    assert "<strong>Acme Stripe (live)</strong> (stripe)" in page
    assert '<th scope="row">Invoice number</th><td class="mono">INV-7</td>' in page
    assert ">Start live run</button>" in page
    assert not Run.objects.exists()


def test_confirmed_live_run_starts_with_the_confirmed_values(
    client, live_operator, version, stripe_live
):
    client.force_login(live_operator)
    token = confirmation_token(body(client.post(run_url(version), LIVE)))
    response = client.post(run_url(version), {**LIVE, "live_confirmation": token})
    run = Run.objects.get()
    assert response.status_code == 302
    assert run.environment == "live" and run.inputs["amount"] == 2400000


def test_a_confirmation_of_other_values_asks_again(client, live_operator, version, stripe_live):
    client.force_login(live_operator)
    token = confirmation_token(body(client.post(run_url(version), LIVE)))
    changed = {**LIVE, "amount": "99999.99", "live_confirmation": token}
    page = body(client.post(run_url(version), changed))
    assert "are not the ones you confirmed" in page
    assert "Start a live run of Pay invoice for USD\u00a099,999.99?" in page
    assert not Run.objects.exists()


def test_a_confirmation_for_an_older_version_asks_again(
    client, live_operator, version, stripe_live
):
    client.force_login(live_operator)
    token = confirmation_token(body(client.post(run_url(version), LIVE)))
    make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")  # a new current version
    page = body(client.post(run_url(version), {**LIVE, "live_confirmation": token}))
    assert "are not the ones you confirmed" in page
    assert not Run.objects.exists()


def test_change_values_goes_back_to_the_form_with_the_values_kept(
    client, live_operator, version, stripe_live
):
    client.force_login(live_operator)
    response = client.post(run_url(version), {**LIVE, "change_values": "1"}, **HTMX)
    page = body(response)
    assert response.status_code == 200
    assert 'name="amount" value="24000.00"' in page
    assert 'class="run-form"' in page and "Start live run" not in page
    assert not Run.objects.exists()


def test_a_sandbox_run_needs_no_confirmation(client, live_operator, version, stripe_live):
    client.force_login(live_operator)
    response = client.post(run_url(version), VALID)
    assert response.status_code == 302
    assert Run.objects.get().environment == "sandbox"
