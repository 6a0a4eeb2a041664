"""Money as money on the pages people read, and raw minor units in the JSON views.

The style is the ISO code ("USD 24,000.00", not "$24,000.00"): "$" is also the Canadian,
Australian and Mexican dollar's, and a finance reader must never have to guess
(docs/money.md). Code and digits are joined by a no-break space.
"""

import json

import pytest
from django.urls import reverse

from runs.api_keys import create_api_key
from tests.conftest import make_version
from tests.test_dashboard_runs import PAYMENT_WITH_REVIEW, body, detail_url, start

USD_24K = "USD\u00a024,000.00"
JPY_24K = "JPY\u00a024,000"

CHARGE = {
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "required": ["invoice_id", "amount", "currency"],
        "properties": {
            "invoice_id": {"type": "string", "title": "Invoice number"},
            "amount": {
                "type": "integer",
                "title": "Amount",
                "minimum": 1,
                "x-rapidfolio-money": {"currency_field": "currency"},
            },
            "currency": {"type": "string", "enum": ["usd", "jpy"], "default": "usd"},
        },
    },
    "start": "charge",
    "nodes": {
        "charge": {
            "type": "tool",
            "tool": "stripe.create_payment_intent",
            "input": {
                "amount": "inputs.amount",
                "currency": "inputs.currency",
                "customer": "'cus_acme'",
            },
            "retry": {"max_attempts": 1},
            "next": "paid",
        },
        "paid": {"type": "output", "value": {"paid": "steps.charge.output.amount"}},
    },
}


@pytest.fixture
def charged_run(db, operator):
    version = make_version(CHARGE, name="Charge invoice")
    return start(version, operator, {"invoice_id": "INV-1", "amount": 2400000, "currency": "usd"})


@pytest.fixture
def paused_run(db, operator):
    version = make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")
    inputs = {"invoice_id": "INV-1", "customer_id": "cus_acme", "amount": 2400000}
    return start(version, operator, {**inputs, "currency": "usd"})


def test_inputs_tab_shows_the_amount_as_money_and_its_json_raw(client, operator, charged_run):
    client.force_login(operator)
    page = body(client.get(detail_url(charged_run, "inputs")))
    assert f'<th scope="row">amount</th><td class="mono">{USD_24K}</td>' in page
    assert '<th scope="row">currency</th><td class="mono">usd</td>' in page
    assert "&quot;amount&quot;: 2400000" in page  # the JSON block below is as recorded


def test_inputs_tab_uses_the_currencys_own_decimals(client, operator):
    version = make_version(CHARGE, name="Charge invoice")
    run = start(version, operator, {"invoice_id": "INV-2", "amount": 24000, "currency": "jpy"})
    client.force_login(operator)
    page = body(client.get(detail_url(run, "inputs")))
    assert f'<td class="mono">{JPY_24K}</td>' in page


def test_step_log_summarises_the_amounts_a_step_sent_and_received(client, operator, charged_run):
    assert charged_run.status == "completed"
    client.force_login(operator)
    page = body(client.get(detail_url(charged_run, "step-log")))
    summary = page.split('class="small step-money"')[1].split("</p>")[0]
    assert summary.count(f'<strong class="money">{USD_24K}</strong>') == 2  # input and output
    assert "Input:" in summary and "Output:" in summary
    # The request and response blocks stay exactly as recorded.
    assert "&quot;amount&quot;: 2400000" in page


def test_review_panel_shows_the_amount_as_money(client, reviewer, paused_run):
    client.force_login(reviewer)
    page = body(client.get(detail_url(paused_run)))
    assert f'<th scope="row">amount</th><td class="mono">{USD_24K}</td>' in page


def test_review_queue_shows_the_amount_as_money(client, reviewer, paused_run):
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert f'<strong class="mono">{USD_24K}</strong>' in page
    assert "2400000" not in page


def test_the_api_keeps_minor_units(client, charged_run):
    _, raw = create_api_key(name="Ledger export", environment="sandbox")
    response = client.get(f"/v1/runs/{charged_run.public_id}", HTTP_AUTHORIZATION=f"Bearer {raw}")
    record = response.json()
    assert record["inputs"]["amount"] == 2400000
    step = record["steps"][0]
    assert step["input"]["amount"] == 2400000
    assert json.dumps(step["output"]).count("2400000") >= 1


def test_an_amount_in_a_currency_nobody_knows_is_shown_raw(client, operator):
    schema = CHARGE["input_schema"]
    definition = {
        "input_schema": {
            **schema,
            "properties": {
                **schema["properties"],
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
        },
        "start": "paid",
        "nodes": {"paid": {"type": "output", "value": {"paid": "inputs.amount"}}},
    }
    version = make_version(definition, name="Points")
    run = start(version, operator, {"invoice_id": "INV-4", "amount": 2400000, "currency": "QQQ"})
    client.force_login(operator)
    page = body(client.get(detail_url(run, "inputs")))
    assert '<th scope="row">amount</th><td class="mono">2400000</td>' in page
