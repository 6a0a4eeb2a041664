"""Export of the Runs list (runs/export.py): every run the list's filters select, as CSV or JSON
Lines, from the dashboard (/runs/export.csv, /runs/export.jsonl) and the API (GET /v1/runs with
Accept: text/csv or application/x-ndjson), streamed in keyset batches."""

import csv
import datetime
import io
import json
import logging

import pytest
from django.db import connection, transaction
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from procedures.models import Trigger
from rapidfolio.roles import LIVE_ENVIRONMENT, OPERATORS
from runs import export, writer
from runs.api_keys import create_api_key
from runs.models import FailureKind, Run, RunType
from runs.services import retry_run, start_run
from tests.conftest import make_user, make_version
from tests.factories import force_status

# A procedure whose runs carry a listing: an amount in a currency and two references.
INVOICE_DEFINITION = {
    "input_schema": {
        "type": "object",
        "properties": {
            "amount": {
                "type": "integer",
                "minimum": 1,
                "x-rapidfolio-money": {"currency_field": "currency"},
            },
            "currency": {"type": "string", "enum": ["usd", "eur", "jpy"]},
            "invoice": {"type": "string"},
            "payee": {"type": "string"},
        },
        "required": ["amount", "currency", "invoice", "payee"],
    },
    "reference_fields": ["invoice", "payee"],
    "start": "done",
    "nodes": {"done": {"type": "output", "value": {"paid": "inputs.amount"}}},
}
DAY = datetime.datetime(2026, 11, 2, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def invoice_version(db):
    return make_version(INVOICE_DEFINITION, name="Pay invoice")


def make_run(version, *, at, status="completed", environment="sandbox", **options):
    """A run created at `at`, walked to `status` (failed ones as `failure_kind`, for `reason`)."""
    inputs = options.pop("inputs", None) or (
        {"amount": 2400000, "currency": "usd", "invoice": "INV-1", "payee": "Acme"}
        if "invoice" in version.input_schema["properties"]
        else {"amount": 5, "currency": "usd"}
    )
    reason = options.pop("reason", None)
    failure_kind = options.pop("failure_kind", FailureKind.TRANSIENT)
    options.setdefault("type", RunType.API)
    with transaction.atomic():
        run = start_run(version=version, environment=environment, inputs=inputs, **options)
        Run.objects.filter(pk=run.pk).update(created_at=at)
        run.refresh_from_db()
        if reason is not None:
            writer.transition(run, "running", actor="system:test")
            writer.transition(
                run, "failed", actor="system:test", failure_kind=failure_kind, reason=reason
            )
            run.refresh_from_db()
            return run
        return force_status(run, status, failure_kind=failure_kind)


def csv_rows(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def json_lines(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def ids(rows) -> list[str]:
    return [row["run_id"] for row in rows]


def newest_first(runs) -> list[str]:
    return [run.public_id for run in sorted(runs, key=lambda r: (r.created_at, r.pk), reverse=True)]


@pytest.fixture
def live_viewer(db):
    return make_user("lena", OPERATORS, LIVE_ENVIRONMENT)


# --- what an export holds ---------------------------------------------------------------------
def test_csv_export_has_a_header_and_every_column_of_a_run(client, live_viewer, invoice_version):
    run = make_run(invoice_version, at=DAY)
    client.force_login(live_viewer)

    response = client.get("/runs/export.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    [row] = csv_rows(response)
    assert row == {
        "run_id": run.public_id,
        "procedure_id": invoice_version.procedure.public_id,
        "procedure": "Pay invoice",
        "version": "1",
        "environment": "sandbox",
        "type": "api",
        "status": "completed",
        "failure_kind": "",
        "failure_reason": "",
        "amount": "24000.00",
        "currency": "USD",
        "amount_minor": "2400000",
        "reference.invoice": "INV-1",
        "reference.payee": "Acme",
        "started_by_kind": "system",
        "started_by": "",
        "started_by_name": "",
        "trigger_event": "",
        "created_at": "2026-11-02T09:00:00.000000+00:00",
        "started_at": run.started_at.isoformat(timespec="microseconds"),
        "finished_at": run.finished_at.isoformat(timespec="microseconds"),
        "duration_seconds": row["duration_seconds"],  # below
        "retry_of": "",
        "url": f"http://testserver/runs/{run.public_id}/",
    }
    seconds = (run.finished_at - run.started_at).total_seconds()
    assert float(row["duration_seconds"]) == pytest.approx(seconds, abs=0.001)


def test_json_lines_has_the_same_fields_with_numbers_as_numbers_and_nothing_as_null(
    client, live_viewer, invoice_version
):
    run = make_run(invoice_version, at=DAY)
    pending = make_run(invoice_version, at=DAY - datetime.timedelta(days=1), status="pending")
    client.force_login(live_viewer)

    response = client.get("/runs/export.jsonl")

    assert response["Content-Type"] == "application/x-ndjson"
    finished, waiting = json_lines(response)
    csv_header = next(
        csv.reader(io.StringIO(b"".join(client.get("/runs/export.csv").streaming_content).decode()))
    )
    assert list(finished) == csv_header
    assert finished["run_id"] == run.public_id
    assert finished["version"] == 1
    assert finished["amount_minor"] == 2400000
    assert finished["amount"] == "24000.00"  # exact decimal places, as text
    assert isinstance(finished["duration_seconds"], float)
    assert finished["failure_kind"] is None and finished["retry_of"] is None
    assert waiting["run_id"] == pending.public_id
    assert waiting["started_at"] is None and waiting["duration_seconds"] is None


def test_who_started_a_run_is_its_user_its_api_key_or_its_trigger(
    client, live_viewer, simple_version
):
    operator = make_user("olivia", OPERATORS)
    api_key, _ = create_api_key(name="Billing backend", environment="sandbox")
    trigger = Trigger.objects.create(
        procedure=simple_version.procedure,
        environment="sandbox",
        kind="cron",
        name="Nightly sweep",
        cron_expression="0 0 * * *",
    )
    by_user = make_run(simple_version, at=DAY, user=operator, type=RunType.MANUAL)
    by_key = make_run(simple_version, at=DAY - datetime.timedelta(hours=1), api_key=api_key)
    by_trigger = make_run(
        simple_version,
        at=DAY - datetime.timedelta(hours=2),
        trigger=trigger,
        type=RunType.TRIGGER,
    )
    client.force_login(live_viewer)

    rows = {row["run_id"]: row for row in json_lines(client.get("/runs/export.jsonl"))}

    assert (rows[by_user.public_id]["started_by_kind"], rows[by_user.public_id]["started_by"]) == (
        "user",
        "olivia",
    )
    key_row = rows[by_key.public_id]
    assert (key_row["started_by_kind"], key_row["started_by"], key_row["started_by_name"]) == (
        "api_key",
        api_key.prefix,
        "Billing backend",
    )
    trigger_row = rows[by_trigger.public_id]
    assert (trigger_row["started_by_kind"], trigger_row["started_by"]) == (
        "trigger",
        trigger.public_id,
    )
    assert trigger_row["started_by_name"] == "Nightly sweep"


def test_a_retry_names_the_run_it_retried(client, live_viewer, simple_version):
    operator = make_user("olivia", OPERATORS)
    failed = make_run(simple_version, at=DAY - datetime.timedelta(hours=1), reason="Bank timed out")
    retry = retry_run(run=failed, user=operator)
    client.force_login(live_viewer)

    rows = {row["run_id"]: row for row in json_lines(client.get("/runs/export.jsonl"))}

    assert rows[retry.public_id]["retry_of"] == failed.public_id
    assert rows[failed.public_id]["failure_kind"] == "transient"
    assert rows[failed.public_id]["failure_reason"] == "Bank timed out"


# --- CSV: RFC 4180 and no formulas ------------------------------------------------------------
@pytest.mark.parametrize(
    "payee", ['=HYPERLINK("http://x")', "+1+1", "-1+1", "@SUM(A1)", "\tcmd", "\rcmd"]
)
def test_a_text_cell_a_spreadsheet_would_run_as_a_formula_gets_a_leading_apostrophe(
    client, live_viewer, invoice_version, payee
):
    make_run(
        invoice_version,
        at=DAY,
        inputs={"amount": 100, "currency": "usd", "invoice": "INV-9", "payee": payee},
        reason=payee,
    )
    client.force_login(live_viewer)

    [row] = csv_rows(client.get("/runs/export.csv"))

    assert row["failure_reason"] == "'" + payee
    # The listing keeps a reference without its surrounding space: "\tcmd" is "cmd".
    if payee.strip() == payee:
        assert row["reference.payee"] == "'" + payee
    assert row["amount_minor"] == "100"  # numbers are never touched


def test_a_username_that_starts_like_a_formula_is_guarded_too(client, live_viewer, simple_version):
    # Django's usernames may start with @, + or -.
    make_run(simple_version, at=DAY, user=make_user("@admin", OPERATORS), type=RunType.MANUAL)
    client.force_login(live_viewer)

    [row] = csv_rows(client.get("/runs/export.csv"))

    assert row["started_by"] == "'@admin"


def test_json_lines_keep_a_formula_like_value_as_it_is(client, live_viewer, invoice_version):
    make_run(invoice_version, at=DAY, reason="=1+1")
    client.force_login(live_viewer)

    [row] = json_lines(client.get("/runs/export.jsonl"))

    assert row["failure_reason"] == "=1+1"


def test_csv_quotes_commas_quotes_and_line_breaks_and_ends_lines_with_crlf(
    client, live_viewer, invoice_version
):
    payee = 'Acme, "the" Company\nLtd — Zürich'
    make_run(
        invoice_version,
        at=DAY,
        inputs={"amount": 100, "currency": "usd", "invoice": "INV-9", "payee": payee},
    )
    client.force_login(live_viewer)
    response = client.get("/runs/export.csv")
    raw = b"".join(response.streaming_content)

    assert '"Acme, ""the"" Company\nLtd — Zürich"'.encode() in raw
    assert raw.count(b"\r\n") == 2  # the header's and the row's ends; the break inside is data
    [row] = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert row["reference.payee"] == payee


# --- the same filters and visibility as the list --------------------------------------------
@pytest.fixture
def spread_runs(simple_version, invoice_version):
    """Runs of two procedures, both environments, several statuses and types, over ten days."""
    operator = make_user("olivia", OPERATORS, LIVE_ENVIRONMENT)
    runs = []
    statuses = ["completed", "failed", "pending", "cancelled", "awaiting_review"]
    for number in range(20):
        runs.append(
            make_run(
                invoice_version if number % 3 == 0 else simple_version,
                at=DAY - datetime.timedelta(days=number // 2),
                status=statuses[number % len(statuses)],
                environment="live" if number % 4 == 0 else "sandbox",
                **({"user": operator, "type": RunType.MANUAL} if number % 5 == 0 else {}),
            )
        )
    return runs


@pytest.mark.parametrize(
    "query, keep",
    [
        ("", lambda run: True),
        ("status=failed", lambda run: run.status == "failed"),
        (
            "status=failed&status=pending&status=cancelled",
            lambda run: run.status in ("failed", "pending", "cancelled"),
        ),
        ("environment=live", lambda run: run.environment == "live"),
        ("type=manual", lambda run: run.type == "manual"),
        ("procedure={invoice}", lambda run: run.procedure.name == "Pay invoice"),
        (
            "created_from=2026-10-30&created_to=2026-11-01",
            lambda run: (
                datetime.date(2026, 10, 30)
                <= run.created_at.date()
                <= DAY.date() - datetime.timedelta(days=1)
            ),
        ),
        ("q=INV-1", lambda run: run.procedure.name == "Pay invoice"),
    ],
)
def test_the_export_holds_exactly_the_runs_the_filters_select_newest_first(
    client, live_viewer, spread_runs, invoice_version, query, keep
):
    client.force_login(live_viewer)
    query = query.format(invoice=invoice_version.procedure.public_id)

    rows = csv_rows(client.get(f"/runs/export.csv?{query}"))

    assert ids(rows) == newest_first(run for run in spread_runs if keep(run))


def test_a_page_cursor_in_the_querystring_does_not_narrow_the_export(
    client, live_viewer, spread_runs
):
    client.force_login(live_viewer)
    page = client.get("/runs/")
    cursor = page.context["page"].next_cursor or "anything"

    rows = csv_rows(client.get(f"/runs/export.csv?cursor={cursor}"))

    assert len(rows) == len(spread_runs)


def test_an_operator_without_live_access_exports_only_sandbox_runs(client, spread_runs):
    client.force_login(make_user("oscar", OPERATORS))

    rows = csv_rows(client.get("/runs/export.csv"))
    asked_for_live = csv_rows(client.get("/runs/export.csv?environment=live"))

    assert ids(rows) == newest_first(run for run in spread_runs if run.environment == "sandbox")
    assert asked_for_live == []


def test_a_user_who_may_not_see_runs_gets_a_403(client, db):
    client.force_login(make_user("nobody"))

    assert client.get("/runs/export.csv").status_code == 403
    assert client.get("/runs/export.jsonl").status_code == 403


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    response = client.get("/runs/export.csv?status=failed")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_export_answers_get_only(client, live_viewer):
    client.force_login(live_viewer)

    assert client.post("/runs/export.csv").status_code == 405


@pytest.mark.parametrize(
    "query, message",
    [
        ("created_from=2026-11-30&created_to=2026-11-01", "Created to: The end date is before"),
        ("status=paid", "Status: Select a valid choice. paid is not one of"),
        ("created_from=yesterday", "Created from: Enter a valid date."),
        ("procedure=proc_nonexistent", "Procedure: Select a valid choice."),
        ("q=ab", "Search: Ensure this value has at least 3 characters"),
    ],
)
def test_invalid_filters_get_a_400_that_says_what_is_wrong(client, live_viewer, query, message):
    client.force_login(live_viewer)

    response = client.get(f"/runs/export.csv?{query}")

    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert message in response.content.decode()
    assert response.content.decode().startswith("Some filters are not valid")


# --- streamed in keyset batches ---------------------------------------------------------------
def test_the_answer_is_a_streamed_attachment_named_by_the_filter_dates(client, live_viewer):
    client.force_login(live_viewer)

    response = client.get("/runs/export.csv?created_from=2026-11-01&created_to=2026-11-30")

    assert isinstance(response, StreamingHttpResponse)
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="runs_2026-11-01-to-2026-11-30_exported-')
    assert disposition.endswith('Z.csv"')
    assert response["Cache-Control"] == "private, no-store"
    assert b"".join(response.streaming_content).startswith(b"run_id,procedure_id,")


def test_an_export_without_dates_is_named_by_when_it_was_made(client, live_viewer):
    client.force_login(live_viewer)

    response = client.get("/runs/export.jsonl")

    assert response["Content-Disposition"].startswith('attachment; filename="runs_exported-20')
    assert response["Content-Disposition"].endswith('Z.jsonl"')
    assert b"".join(response.streaming_content) == b""  # no run: no line


@pytest.mark.parametrize("statuses", [[], ["completed"], ["completed", "failed", "pending"]])
def test_runs_that_share_a_creation_time_cross_batch_boundaries_once_each(
    client, live_viewer, simple_version, monkeypatch, statuses
):
    # Eleven runs at three moments (4 + 4 + 3), in batches of three: every boundary falls
    # inside a group of equal created_at, where only the id orders the runs.
    runs = [
        make_run(
            simple_version,
            at=DAY - datetime.timedelta(minutes=number // 4),
            status=["completed", "failed", "pending"][number % 3],
        )
        for number in range(11)
    ]
    monkeypatch.setattr(export, "BATCH_SIZE", 3)
    client.force_login(live_viewer)
    query = "&".join(f"status={status}" for status in statuses)
    wanted = newest_first(run for run in runs if not statuses or run.status in statuses)

    response = client.get(f"/runs/export.csv?{query}")
    with CaptureQueriesContext(connection) as queries:
        rows = csv_rows(response)

    assert ids(rows) == wanted
    reads = [q for q in queries.captured_queries if "runs_run" in q["sql"]]
    # One read per batch (two with several statuses on PostgreSQL: the keys, then the rows),
    # and one more that finds the end when the last batch is full.
    batches = len(wanted) // 3 + 1
    per_batch = 2 if len(statuses) > 1 and connection.vendor == "postgresql" else 1
    assert len(reads) == batches * per_batch


def test_runs_created_after_the_export_started_are_not_in_it(client, live_viewer, simple_version):
    before = make_run(simple_version, at=timezone.now() - datetime.timedelta(minutes=1))
    client.force_login(live_viewer)
    response = client.get("/runs/export.csv")

    make_run(simple_version, at=timezone.now() + datetime.timedelta(minutes=1))

    assert ids(csv_rows(response)) == [before.public_id]


# --- the audit line ---------------------------------------------------------------------------
def test_each_export_logs_who_exported_which_filters_and_how_many_runs(
    client, live_viewer, spread_runs, caplog
):
    client.force_login(live_viewer)
    caplog.set_level(logging.INFO, logger="runs.export")

    rows = csv_rows(client.get("/runs/export.csv?status=failed&environment=sandbox"))

    [line] = [record for record in caplog.records if record.name == "runs.export"]
    assert line.user == "lena"
    assert line.export_format == "csv"
    assert line.export_rows == len(rows)
    assert line.export_filters == "environment=sandbox&status=failed"
    assert line.export_finished is True
    assert line.request_id


def test_the_audit_line_leaves_the_search_text_out(client, live_viewer, spread_runs, caplog):
    client.force_login(live_viewer)
    caplog.set_level(logging.INFO, logger="runs.export")

    b"".join(client.get("/runs/export.csv?q=Acme+Holdings").streaming_content)

    [line] = [record for record in caplog.records if record.name == "runs.export"]
    assert line.export_filters == "q=<13 characters>"
    assert "Acme" not in line.getMessage()


def test_an_export_the_client_abandons_is_logged_as_interrupted(
    client, live_viewer, spread_runs, monkeypatch, caplog
):
    monkeypatch.setattr(export, "BATCH_SIZE", 5)
    client.force_login(live_viewer)
    caplog.set_level(logging.INFO, logger="runs.export")
    response = client.get("/runs/export.csv")

    next(iter(response.streaming_content))
    response.close()

    [line] = [record for record in caplog.records if record.name == "runs.export"]
    assert line.export_finished is False
    assert line.export_rows == 5


# --- the list's Export control --------------------------------------------------------------
def test_the_list_links_to_both_exports_with_its_filters_but_not_its_cursor(
    client, live_viewer, spread_runs
):
    client.force_login(live_viewer)
    page = client.get("/runs/?status=failed&cursor=abc&environment=sandbox")

    html = page.content.decode()
    assert 'href="/runs/export.csv?status=failed&amp;environment=sandbox"' in html
    assert 'href="/runs/export.jsonl?status=failed&amp;environment=sandbox"' in html


# --- the API: the same list, by Accept ------------------------------------------------------
@pytest.fixture
def sandbox_key(db):
    return create_api_key(name="Billing backend", environment="sandbox")


def api_get(client, key, path, accept=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key[1]}"}
    if accept is not None:
        headers["HTTP_ACCEPT"] = accept
    return client.get(path, **headers)


@pytest.mark.parametrize(
    "accept",
    ["text/csv", "text/csv; charset=utf-8", "application/json;q=0.5, text/csv"],
)
def test_the_api_list_with_accept_text_csv_streams_every_matching_run(
    client, sandbox_key, spread_runs, accept
):
    response = api_get(client, sandbox_key, "/v1/runs?limit=1", accept)

    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    # Not one page: every run of the key's environment.
    assert ids(csv_rows(response)) == newest_first(
        run for run in spread_runs if run.environment == "sandbox"
    )


@pytest.mark.parametrize("accept", ["application/x-ndjson", "application/jsonl"])
def test_the_api_list_streams_json_lines_for_either_media_type(
    client, sandbox_key, spread_runs, accept
):
    response = api_get(client, sandbox_key, "/v1/runs?status=completed", accept)

    assert response["Content-Type"] == accept
    assert ids(json_lines(response)) == newest_first(
        run for run in spread_runs if run.environment == "sandbox" and run.status == "completed"
    )


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html", "image/png"])
def test_any_other_accept_gets_the_json_page_as_before(client, sandbox_key, spread_runs, accept):
    response = api_get(client, sandbox_key, "/v1/runs?limit=2", accept)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    assert len(body["runs"]) == 2 and body["next_cursor"]
    assert response.content == api_get(client, sandbox_key, "/v1/runs?limit=2").content


def test_the_api_export_refuses_invalid_filters_as_the_json_list_does(client, sandbox_key):
    path = "/v1/runs?created_from=2026-11-30&created_to=2026-11-01"

    as_csv = api_get(client, sandbox_key, path, "text/csv")
    as_json = api_get(client, sandbox_key, path)

    assert as_csv.status_code == as_json.status_code == 422
    assert as_csv.json() == as_json.json()
    assert as_csv.json()["error"]["code"] == "invalid_filters"


def test_the_api_export_logs_the_key_that_exported(client, sandbox_key, spread_runs, caplog):
    caplog.set_level(logging.INFO, logger="runs.export")

    b"".join(api_get(client, sandbox_key, "/v1/runs", "text/csv").streaming_content)

    [line] = [record for record in caplog.records if record.name == "runs.export"]
    assert line.api_key == sandbox_key[0].prefix
    assert line.export_filters == "environment=sandbox"


def test_the_openapi_document_describes_the_exports(client, db):
    operation = client.get("/v1/openapi.json").json()["paths"]["/v1/runs"]["get"]

    content = operation["responses"]["200"]["content"]
    assert {"application/json", "text/csv", "application/x-ndjson", "application/jsonl"} <= set(
        content
    )
    assert "Accept: text/csv" in operation["description"]
