"""Procedure pages: the list, a procedure's versions and recent runs, and the Run button."""

import re

import pytest
from django.urls import reverse

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
    "amount": "700000",
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
    assert re.search(r'<input type="number" name="amount"[^>]*min="1"', page)
    assert '<option value="usd">usd</option>' in page
    assert 'value="sandbox"' in page and 'value="live"' in page
    assert '<button type="submit" class="button primary">Run</button>' in page


def test_run_button_is_not_offered_without_permission(client, reviewer, version):
    client.force_login(reviewer)
    page = body(client.get(page_url(version)))
    assert ">Run</button>" not in page
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


def test_run_with_htmx_navigates_to_the_run_without_a_reload(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), {**VALID, "environment": "live"}, **HTMX)
    run = Run.objects.get()
    assert run.environment == "live"
    assert response.status_code == 200
    assert reverse("runs:detail", args=[run.public_id]) in response.headers["HX-Location"]


def test_invalid_run_form_shows_errors_beside_fields(client, operator, version):
    client.force_login(operator)
    response = client.post(run_url(version), {**VALID, "amount": "0", "invoice_id": ""}, **HTMX)
    assert response.status_code == 422
    page = body(response)
    assert page.lstrip().startswith('<div id="run-form"')
    assert "Ensure this value is greater than or equal to 1." in page
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
