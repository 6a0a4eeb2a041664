"""Search on the Runs list (`?q=`) and the listing it reads: the references and amount a run's
row shows, computed from its inputs when it starts (procedures.run_listing), stored on its row,
as fixed as the inputs, and checked against them by the integrity check."""

import datetime

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from procedures.definition import validate_definition
from procedures.run_listing import listing_of
from runs import selectors
from runs.api_keys import create_api_key
from runs.integrity import verify_run
from runs.models import Run, RunType
from runs.services import start_run
from tests.conftest import SIMPLE_DEFINITION, make_version, needs_postgres
from tests.factories import force_status
from tests.tampering import tamper

INVOICE_DEFINITION = {
    "input_schema": {
        "type": "object",
        "required": ["invoice_id", "customer_id", "amount", "currency"],
        "properties": {
            "invoice_id": {"type": "string", "title": "Invoice number"},
            "customer_id": {"type": "string", "title": "Customer"},
            "amount": {
                "type": "integer",
                "minimum": 1,
                "x-rapidfolio-money": {"currency_field": "currency"},
            },
            "currency": {"type": "string", "enum": ["usd", "eur", "jpy"]},
            "note": {"type": "string"},
        },
    },
    "reference_fields": ["invoice_id", "customer_id"],
    "start": "done",
    "nodes": {"done": {"type": "output", "value": {"ok": "True"}}},
}


@pytest.fixture
def invoice_version(db):
    return make_version(INVOICE_DEFINITION, name="Pay invoice")


def start(version, environment="sandbox", **inputs):
    values = {"invoice_id": "INV-0001", "customer_id": "cus_acme", "amount": 2400000}
    values |= {"currency": "usd", **inputs}
    return start_run(version=version, environment=environment, inputs=values, type=RunType.API)


@pytest.fixture
def invoices(invoice_version):
    """Four runs of the invoice procedure, one a minute, oldest first."""
    base = timezone.now() - datetime.timedelta(hours=1)
    runs = []
    for number, (invoice, customer) in enumerate(
        [
            ("INV-1001", "cus_AcmeMetals"),
            ("INV-1002", "cus_nordic"),
            ("INV-2001", "cus_acmemetals"),
            ("INV-3001", "cus_blue"),
        ]
    ):
        run = start(invoice_version, invoice_id=invoice, customer_id=customer)
        Run.objects.filter(pk=run.pk).update(created_at=base + datetime.timedelta(minutes=number))
        run.refresh_from_db()
        runs.append(run)
    return runs


def auditor() -> User:
    user, _ = User.objects.get_or_create(username="auditor", defaults={"is_superuser": True})
    return user


def found(q, **params) -> list[str]:
    page = selectors.list_runs({"q": q, **params}, viewer=auditor())
    assert not page.filter.form.errors, page.filter.form.errors
    return [run.public_id for run in page.runs]


def ids(runs) -> list[str]:
    return [run.public_id for run in sorted(runs, key=lambda r: r.created_at, reverse=True)]


# --- the definition's reference_fields ----------------------------------------------------------


def test_reference_fields_must_be_declared_inputs():
    definition = {**INVOICE_DEFINITION, "reference_fields": ["invoice_id", "payee"]}
    messages = [str(problem) for problem in validate_definition(definition)]
    assert messages == [
        "reference_fields names 'payee', which is not an input; input_schema's properties "
        "are: 'invoice_id', 'customer_id', 'amount', 'currency', 'note'"
    ]


@pytest.mark.parametrize(
    "value, message",
    [
        ("invoice_id", "reference_fields must be a list of input names"),
        ([1, 2], "reference_fields must be a list of input names"),
        (["invoice_id", "invoice_id"], "reference_fields lists 'invoice_id' more than once"),
        (["a", "b", "c", "d", "e", "f"], "reference_fields lists at most 5 inputs"),
    ],
)
def test_reference_fields_that_are_not_a_short_list_of_names_are_refused(value, message):
    messages = [
        str(p) for p in validate_definition({**INVOICE_DEFINITION, "reference_fields": value})
    ]
    assert any(text.startswith(message) for text in messages), messages


def test_an_object_input_is_no_reference():
    definition = {
        "input_schema": {"type": "object", "properties": {"payee": {"type": "object"}}},
        "reference_fields": ["payee"],
        "start": "done",
        "nodes": {"done": {"type": "output", "value": {}}},
    }
    (problem,) = validate_definition(definition)
    assert "an object or list input" in str(problem)


def test_a_definition_without_reference_fields_stays_valid():
    assert validate_definition(SIMPLE_DEFINITION) == []


# --- the listing, stored with the run ------------------------------------------------------------


def test_a_run_stores_its_references_search_text_and_amount_when_it_starts(invoice_version):
    run = Run.objects.get(pk=start(invoice_version, customer_id="  Cus_ＡＣＭＥ ").pk)
    assert run.reference_values == {"invoice_id": "INV-0001", "customer_id": "Cus_ＡＣＭＥ"}
    assert run.search_text == "inv-0001\ncus_acme"  # NFKC and case-folded, one value a line
    assert (run.amount_minor, run.amount_currency) == (2400000, "USD")


def test_a_run_without_reference_fields_or_money_has_an_empty_listing(simple_version):
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type=RunType.API,
    )
    run.refresh_from_db()
    assert (run.reference_values, run.search_text, run.amount_minor, run.amount_currency) == (
        {},
        "",
        None,
        "",
    )


def test_the_listing_is_written_in_the_runs_own_insert(invoice_version):
    # The start-run API's speed is measured: the listing costs no statement of its own.
    with CaptureQueriesContext(connection) as captured:
        start(invoice_version)
    run_writes = [
        q["sql"] for q in captured.captured_queries if '"runs_run"' in q["sql"].split("(")[0]
    ]
    assert len(run_writes) == 1 and run_writes[0].startswith("INSERT"), run_writes
    assert '"search_text"' in run_writes[0]


def test_a_long_reference_is_kept_by_its_first_200_characters(invoice_version):
    run = start(invoice_version, customer_id="c" * 300)
    assert len(run.reference_values["customer_id"]) == 200


# --- search --------------------------------------------------------------------------------


def test_search_finds_a_run_by_its_whole_id(invoices):
    assert found(invoices[1].public_id) == [invoices[1].public_id]


def test_search_finds_runs_by_the_start_of_their_id_in_any_case(invoices):
    run = invoices[2]
    assert run.public_id in found(run.public_id[:-3])
    assert run.public_id in found(run.public_id[:-3].lower())
    assert run.public_id in found(run.public_id[4:20])  # without "run_"
    assert found(run.public_id[:-1] + "!") == []


def test_search_finds_runs_by_a_reference_value_exactly(invoices):
    assert found("INV-1002") == [invoices[1].public_id]


def test_search_finds_runs_by_part_of_a_reference_in_any_case(invoices):
    assert found("ACMEmetal") == ids([invoices[0], invoices[2]])
    assert found("inv-1") == ids(invoices[:2])


def test_a_code_is_matched_whole_not_only_by_what_follows_its_prefix(invoices, invoice_version):
    # The index is asked for "nordic" alone (runs.filters._references_containing); the rows
    # it finds are checked for the whole query.
    supplier = start(invoice_version, invoice_id="INV-9", customer_id="sup_nordic")
    assert found("cus_nordic") == [invoices[1].public_id]
    assert found("SUP_Nordic") == [supplier.public_id]
    assert found("nordic") == ids([supplier, invoices[1]])


def test_search_matches_within_one_value_never_across_two(invoices):
    # "…1001" ends the invoice and "cus_" starts the customer: no run has "1001cus".
    assert found("1001cus") == []
    assert found("1001 cus") == []


def test_search_combines_with_the_other_filters(invoices, invoice_version):
    with transaction.atomic():
        force_status(invoices[2], "failed")
    live = start(invoice_version, environment="live", customer_id="cus_acme_live")
    assert found("acme", status=["failed"]) == [invoices[2].public_id]
    assert found("acme", status=["failed", "pending"]) == ids([invoices[2], invoices[0], live])
    assert found("acme", environment="live") == [live.public_id]


def test_search_pages_with_cursors_of_its_own(invoices):
    first = selectors.list_runs({"q": "cus_"}, viewer=auditor(), page_size=3)
    assert [r.public_id for r in first.runs] == ids(invoices)[:3] and first.has_next
    second = selectors.list_runs(
        {"q": "cus_"}, viewer=auditor(), page_size=3, cursor=first.next_cursor
    )
    assert [r.public_id for r in second.runs] == ids(invoices)[3:] and not second.has_next
    # A cursor belongs to its search: carried over to another, it is refused.
    with pytest.raises(selectors.InvalidCursor):
        selectors.list_runs({"q": "acme"}, viewer=auditor(), cursor=first.next_cursor)


@pytest.mark.parametrize(
    "q, message",
    [
        ("ab", "Ensure this value has at least 3 characters (it has 2)."),
        ("x" * 101, "Ensure this value has at most 100 characters (it has 101)."),
    ],
)
def test_a_search_too_short_or_too_long_is_a_form_error(invoices, q, message):
    page = selectors.list_runs({"q": q}, viewer=auditor())
    assert page.runs == [] and page.filter.form.errors == {"q": [message]}


def test_an_empty_search_lists_every_run(invoices):
    assert [r.public_id for r in selectors.list_runs({"q": "  "}, viewer=auditor()).runs] == ids(
        invoices
    )


def test_search_text_with_like_wildcards_is_matched_literally(invoices, invoice_version):
    odd = start(invoice_version, invoice_id="INV_50%")
    assert found("v_50%") == [odd.public_id]
    assert found("v_1") == []  # as a wildcard, "_" would match INV-1001's "-"
    assert found("1%0") == []


def test_search_sees_only_the_viewers_environments(invoices, invoice_version, operator):
    live = start(invoice_version, environment="live", invoice_id="INV-LIVE")
    page = selectors.list_runs({"q": "INV-LIVE"}, viewer=operator)  # sandbox only
    assert page.runs == []
    assert found("INV-LIVE") == [live.public_id]


# --- the page and the API ------------------------------------------------------------------


def test_the_list_page_has_a_search_box_that_keeps_its_query(client, operator, invoices):
    client.force_login(operator)
    response = client.get(reverse("runs:list"), {"q": "INV-1002"})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'type="search" name="q" value="INV-1002"' in body
    assert invoices[1].public_id in body and invoices[0].public_id not in body


def test_the_list_shows_the_references_and_the_amount_as_money(client, operator, invoices):
    client.force_login(operator)
    body = client.get(reverse("runs:list")).content.decode()
    assert '<th scope="col">References</th><th scope="col" class="num">Amount</th>' in body
    assert '<span class="muted small">Invoice number</span> <span class="mono">INV-1002</span>' in (
        body
    )
    assert '<span class="muted small">Customer</span> <span class="mono">cus_nordic</span>' in body
    assert '<span class="money">USD\u00a024,000.00</span>' in body


def test_a_bad_search_on_the_page_is_shown_beside_the_box_not_a_500(client, operator, invoices):
    client.force_login(operator)
    response = client.get(reverse("runs:list"), {"q": "ab"})
    assert response.status_code == 200
    assert "Search: Ensure this value has at least 3 characters" in response.content.decode()


def test_the_api_list_takes_q(client, invoices):
    _, key = create_api_key(name="search", environment="sandbox")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    answer = client.get("/v1/runs", {"q": "acmemetals"}, **headers)
    assert answer.status_code == 200
    assert [run["id"] for run in answer.json()["runs"]] == ids([invoices[0], invoices[2]])
    bad = client.get("/v1/runs", {"q": "ab"}, **headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_filters"


def test_the_api_list_shows_references_and_amount(client, invoices):
    _, key = create_api_key(name="search", environment="sandbox")
    answer = client.get("/v1/runs", {"q": "INV-1002"}, HTTP_AUTHORIZATION=f"Bearer {key}")
    (run,) = answer.json()["runs"]
    assert run["references"] == {"invoice_id": "INV-1002", "customer_id": "cus_nordic"}
    assert run["amount"] == {"minor_units": 2400000, "currency": "USD"}


# --- a row that refreshes itself ---------------------------------------------------------------


def row(client, run, **params):
    return client.get(reverse("runs:row", args=[run.public_id]), params, HTTP_HX_REQUEST="true")


def test_a_running_runs_row_polls_and_a_settled_one_does_not(client, operator, invoices):
    with transaction.atomic():
        force_status(invoices[3], "completed")
    client.force_login(operator)
    body = client.get(reverse("runs:list")).content.decode()
    pending_row = f'<tr id="row-{invoices[0].public_id}" hx-get="/runs/{invoices[0].public_id}/row/'
    assert pending_row in body and 'hx-trigger="every 3s" hx-swap="outerHTML"' in body
    assert f'<tr id="row-{invoices[3].public_id}">' in body


def test_the_row_answers_204_while_nothing_it_shows_changed(client, operator, invoices):
    client.force_login(operator)
    first = row(client, invoices[0])
    assert first.status_code == 200 and "every 3s" in first.content.decode()
    seen = first.content.decode().split("?seen=")[1].split('"')[0]
    from urllib.parse import unquote

    assert row(client, invoices[0], seen=unquote(seen)).status_code == 204


def test_the_row_of_a_run_that_settled_is_sent_without_a_trigger(client, operator, invoices):
    client.force_login(operator)
    seen = "pending.."
    with transaction.atomic():
        force_status(invoices[0], "completed")
    response = row(client, invoices[0], seen=seen)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.strip().startswith(f'<tr id="row-{invoices[0].public_id}">')
    assert "hx-trigger" not in body and "Completed" in body and "INV-1001" in body


def test_the_row_url_without_htmx_goes_to_the_run(client, operator, invoices):
    client.force_login(operator)
    response = client.get(reverse("runs:row", args=[invoices[0].public_id]))
    assert response.status_code == 302
    assert response["Location"] == reverse("runs:detail", args=[invoices[0].public_id])


def test_the_row_of_a_run_the_user_may_not_see_is_a_404(client, operator, invoice_version):
    live = start(invoice_version, environment="live")
    client.force_login(operator)
    assert row(client, live).status_code == 404


# --- fixed and checked ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, value",
    [
        ("amount_minor", 100),
        ("amount_currency", "EUR"),
        ("search_text", "inv-9999"),
        ("reference_values", '{"invoice_id": "INV-9999"}'),
    ],
)
def test_the_listing_of_a_running_run_can_never_change(invoice_version, column, value):
    run = start(invoice_version)
    with transaction.atomic():
        force_status(run, "running")
    refused = pytest.raises(Exception, match="fixed when it starts")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE runs_run SET {column} = %s WHERE id = %s", [value, run.pk])
    assert Run.objects.get(pk=run.pk).amount_minor == 2400000


@pytest.mark.parametrize(
    "column, value",
    [
        ("amount_minor", 100),
        ("amount_currency", "EUR"),
        ("search_text", "inv-9999"),
        ("reference_values", '{"invoice_id": "INV-9999", "customer_id": "cus_acme"}'),
    ],
)
def test_integrity_reports_a_listing_edited_in_the_database(finished_invoice, column, value):
    tamper(
        "runs_run", f"UPDATE runs_run SET {column} = %s WHERE id = %s", [value, finished_invoice.pk]
    )
    verification = verify_run(Run.objects.get(pk=finished_invoice.pk))
    assert not verification.intact
    assert "listing (the references, search text and amount" in verification.problem


@pytest.fixture
def finished_invoice(invoice_version):
    from runs import engine

    run = start(invoice_version)
    engine.drive(run.pk)
    run = Run.objects.get(pk=run.pk)
    assert run.status == "completed" and verify_run(run).intact
    return run


def test_an_emptied_listing_of_a_new_run_is_reported(finished_invoice):
    tamper(
        "runs_run",
        "UPDATE runs_run SET reference_values = '{}', search_text = '', amount_minor = NULL, "
        "amount_currency = '' WHERE id = %s",
        [finished_invoice.pk],
    )
    assert not verify_run(Run.objects.get(pk=finished_invoice.pk)).intact


def test_a_run_from_before_listings_may_have_none(finished_invoice):
    # Migration 0008 leaves a large table's older runs without a listing: only those pass.
    long_ago = timezone.now() - datetime.timedelta(days=3650)
    tamper(
        "runs_run",
        "UPDATE runs_run SET reference_values = '{}', search_text = '', amount_minor = NULL, "
        "amount_currency = '', created_at = %s WHERE id = %s",
        [long_ago, finished_invoice.pk],
    )
    assert verify_run(Run.objects.get(pk=finished_invoice.pk)).intact


def test_the_listing_is_computed_the_same_way_everywhere(invoices, invoice_version):
    run = invoices[0]
    listing = listing_of(invoice_version.definition, run.inputs)
    assert listing.references == run.reference_values
    assert listing.search_text == run.search_text


# --- the index (PostgreSQL) ------------------------------------------------------------------
LIST_QUERY = 'FROM "runs_run" INNER JOIN'


@needs_postgres
@pytest.mark.parametrize("q", ["INV-1002", "acmemetals"])
def test_search_is_served_by_the_trigram_and_public_id_indexes(invoices, q):
    with CaptureQueriesContext(connection) as captured:
        found(q)
    (sql,) = [q["sql"] for q in captured.captured_queries if LIST_QUERY in q["sql"]]
    with transaction.atomic(), connection.cursor() as cursor:
        # A few rows: the planner rightly walks the date index; without it, what can serve q.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "run_search_text_trgm_idx" in plan, plan


@needs_postgres
def test_a_run_id_prefix_is_served_by_the_public_id_index(invoices):
    with CaptureQueriesContext(connection) as captured:
        found(invoices[0].public_id[:12])
    (sql,) = [q["sql"] for q in captured.captured_queries if LIST_QUERY in q["sql"]]
    with transaction.atomic(), connection.cursor() as cursor:
        # A few rows: the planner rightly walks the date index; without it, what can serve q.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "run_public_id_unique" in plan and "run_search_text_trgm_idx" in plan, plan
