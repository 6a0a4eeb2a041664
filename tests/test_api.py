"""The HTTP API under /v1/: documents, procedures, starting and reading runs, list, cancel,
retry."""

import json
import re

import pytest
from django.db import transaction
from django.utils import timezone

from procedures.models import Procedure
from rapidfolio.api import api as rapidfolio_api
from reviews.models import ReviewRequest
from reviews.services import approve
from runs import selectors, writer
from runs.api import run_record
from runs.api_keys import create_api_key
from runs.api_schemas import RunDetail
from runs.models import FailureKind, Run, RunStatus, RunType, Step
from runs.services import start_run
from tests.conftest import SIMPLE_DEFINITION, make_version
from tests.factories import force_status

REVIEW_DEFINITION = {
    "input_schema": {
        "type": "object",
        "properties": {"amount": {"type": "integer"}},
        "required": ["amount"],
    },
    "start": "check",
    "nodes": {
        "check": {
            "type": "human_review",
            "title": "Check the amount",
            "show": {"amount": "inputs.amount"},
            "overridable": {"amount": {"type": "integer", "minimum": 1}},
            "next": "done",
        },
        "done": {"type": "output", "value": {"paid": "steps.check.output.amount"}},
    },
}


@pytest.fixture
def sandbox_key(db):
    api_key, raw = create_api_key(name="Billing backend", environment="sandbox")
    return api_key, raw


@pytest.fixture
def api(client, sandbox_key):
    """A test client that sends the sandbox key on every request."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {sandbox_key[1]}"
    return client


def post_json(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def start(simple_version, environment="sandbox", inputs=None, **kwargs):
    return start_run(
        version=simple_version,
        environment=environment,
        inputs=inputs or {"amount": 5, "currency": "usd"},
        type=RunType.MANUAL if "user" in kwargs else RunType.API,
        **kwargs,
    )


# --- documents ------------------------------------------------------------------------------
def test_openapi_document_lists_every_operation(client, db):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/v1/procedures",
        "/v1/procedures/{procedure_id}",
        "/v1/procedures/{procedure_id}/{environment}",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/evidence",
        "/v1/runs/{run_id}/cancel",
        "/v1/runs/{run_id}/retry",
    }
    assert set(document["components"]["securitySchemes"]) == {"BearerKey", "HeaderKey"}


def test_docs_page_loads_its_assets_from_our_own_static_files(client, db):
    response = client.get("/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert all(a.startswith("/static/") for a in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_docs_page_csp_allows_scripts_only_from_self(client, db):
    response = client.get("/v1/docs")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "<script>" not in response.content.decode()  # no inline script to allow


# --- procedures -----------------------------------------------------------------------------
def test_procedures_list_shows_current_version_and_its_input_schema(api, simple_version):
    make_version({**SIMPLE_DEFINITION, "nodes": SIMPLE_DEFINITION["nodes"]}, "Classify payment")
    response = api.get("/v1/procedures")
    assert response.status_code == 200
    [procedure] = response.json()["procedures"]
    assert procedure["id"] == simple_version.procedure.public_id
    assert procedure["name"] == "Classify payment"
    assert procedure["current_version"] == 2
    assert procedure["input_schema"] == SIMPLE_DEFINITION["input_schema"]


def test_procedure_is_read_by_its_public_id(api, simple_version):
    procedure = simple_version.procedure
    response = api.get(f"/v1/procedures/{procedure.public_id}")
    assert response.status_code == 200
    assert response.json()["description"] == procedure.description


def test_unknown_procedure_is_a_404_error(api):
    response = api.get("/v1/procedures/proc_nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- starting runs --------------------------------------------------------------------------
def test_start_run_answers_202_with_api_and_dashboard_urls(api, simple_version, sandbox_key):
    procedure = simple_version.procedure
    response = post_json(
        api, f"/v1/procedures/{procedure.public_id}/sandbox", {"amount": 10, "currency": "eur"}
    )
    assert response.status_code == 202
    body = response.json()
    run = Run.objects.get(public_id=body["id"])
    assert body["status"] == "pending"
    # PUBLIC_BASE_URL unset: the address the request came to (the test client's).
    assert body["url"] == f"http://testserver/v1/runs/{run.public_id}"
    assert body["dashboard_url"] == f"http://testserver/runs/{run.public_id}/"
    assert run.type == RunType.API
    assert run.version == simple_version
    assert run.started_by_api_key == sandbox_key[0]
    assert run.inputs == {"amount": 10, "currency": "eur"}


def test_start_run_uses_the_current_version(api, simple_version):
    newer = make_version(SIMPLE_DEFINITION, "Classify payment")
    response = post_json(
        api,
        f"/v1/procedures/{simple_version.procedure.public_id}/sandbox",
        {"amount": 10, "currency": "eur"},
    )
    assert Run.objects.get(public_id=response.json()["id"]).version == newer


def test_inputs_failing_the_schema_list_every_failing_field(api, simple_version):
    response = post_json(
        api,
        f"/v1/procedures/{simple_version.procedure.public_id}/sandbox",
        {"amount": 0, "currency": "yen", "extra": 1},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_inputs"
    fields = {problem["field"] for problem in error["details"]}
    assert {"amount", "currency", "(inputs)"} <= fields
    assert Run.objects.count() == 0


def test_malformed_json_is_a_400_error(api, simple_version):
    response = api.post(
        f"/v1/procedures/{simple_version.procedure.public_id}/sandbox",
        data='{"amount": ',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


@pytest.mark.parametrize(
    "body",
    [
        '{"amount": NaN, "currency": "usd"}',
        '{"amount": Infinity, "currency": "usd"}',
        '{"amount": 5, "currency": "us\\u0000d"}',
        '{"amount": 5, "currency": "\\ud800"}',
        b'{"amount": 5, "currency": "\xff"}',
    ],
    ids=["nan", "infinity", "nul", "lone-surrogate", "not-utf8"],
)
def test_json_the_database_cannot_store_is_a_400_error(api, body):
    version = make_version({**SIMPLE_DEFINITION, "input_schema": {"type": "object"}}, "Loose")
    response = api.post(
        f"/v1/procedures/{version.procedure.public_id}/sandbox",
        data=body,
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert Run.objects.count() == 0


def test_id_with_characters_no_id_has_is_a_404_error(api):
    assert api.get("/v1/runs/run_%00x").status_code == 404
    assert api.get("/v1/procedures/proc%00").status_code == 404


def test_idempotency_key_with_control_characters_is_refused(api, simple_version):
    response = post_json(
        api,
        f"/v1/procedures/{simple_version.procedure.public_id}/sandbox",
        {"amount": 10, "currency": "eur"},
        HTTP_IDEMPOTENCY_KEY="key\x00one",
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "header.Idempotency-Key"
    assert Run.objects.count() == 0


def test_a_body_that_is_not_an_object_is_a_422_error(api, simple_version):
    response = post_json(api, f"/v1/procedures/{simple_version.procedure.public_id}/sandbox", [1])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_unknown_environment_is_a_422_error(api, simple_version):
    response = post_json(api, f"/v1/procedures/{simple_version.procedure.public_id}/prod", {})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "path.environment"


def test_wrong_method_is_a_405_error(api, simple_version):
    response = api.delete("/v1/runs")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response["Allow"] == "GET"


def test_unknown_api_path_is_a_404_error(api):
    response = api.get("/v1/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_procedure_without_version_cannot_start_a_run(api):
    procedure = Procedure.objects.create(name="Empty")
    response = post_json(api, f"/v1/procedures/{procedure.public_id}/sandbox", {})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_version"


# --- reading a run --------------------------------------------------------------------------
def test_run_is_read_with_its_inputs_status_and_events(api, simple_version, sandbox_key):
    run = start(simple_version, api_key=sandbox_key[0])
    response = api.get(f"/v1/runs/{run.public_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["procedure"] == {
        "id": simple_version.procedure.public_id,
        "name": "Classify payment",
    }
    assert body["version"] == 1
    assert body["environment"] == "sandbox"
    assert body["type"] == "api"
    assert body["starter"]["kind"] == "api_key"
    assert body["starter"]["api_key"] == sandbox_key[0].prefix
    assert body["inputs"] == {"amount": 5, "currency": "usd"}
    assert body["status"] == "pending"
    [event] = body["events"]
    assert event["type"] == "run.created"
    assert event["actor"] == f"api_key:{sandbox_key[0].prefix}"
    assert len(event["hash"]) == 64


def test_run_steps_show_request_and_response_as_json_when_they_parse(api, simple_version):
    run = start(simple_version)
    Step.objects.create(
        run=run,
        sequence=1,
        node_id="charge",
        node_type="tool",
        tool="stripe.create_payment_intent",
        status="succeeded",
        request='{"amount": 5}',
        response="<html>bad gateway</html>",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    [step] = api.get(f"/v1/runs/{run.public_id}").json()["steps"]
    assert step["request"] == {"amount": 5}
    assert step["response"] == "<html>bad gateway</html>"


def test_failed_run_shows_reason_kind_and_failed_step(api, simple_version):
    run = start(simple_version)
    writer.transition(run, RunStatus.RUNNING, actor="system:test")
    step = Step.objects.create(
        run=run,
        sequence=1,
        node_id="charge",
        node_type="tool",
        status="failed",
        error="card declined",
        error_kind="permanent",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    writer.transition(
        run,
        RunStatus.FAILED,
        actor="system:test",
        reason="Card declined",
        failure_kind=FailureKind.PERMANENT,
        failed_step=step,
    )
    body = api.get(f"/v1/runs/{run.public_id}").json()
    assert body["failure"] == {
        "reason": "Card declined",
        "kind": "permanent",
        "step": {"sequence": 1, "node_id": "charge"},
    }
    assert body["output"] is None


def test_run_shows_review_request_and_decision_with_overrides(api, reviewer, worker):
    version = make_version(REVIEW_DEFINITION, "Pay with review")
    run = start(version, inputs={"amount": 700})
    worker.drain()
    request = ReviewRequest.objects.get(run=run)
    approve(request=request, reviewer=reviewer, overrides={"amount": 500}, comment="Partial")
    worker.drain()
    body = api.get(f"/v1/runs/{run.public_id}").json()
    assert body["status"] == "completed"
    assert body["output"] == {"paid": 500}
    [review] = body["reviews"]
    assert review["title"] == "Check the amount"
    assert review["shown_values"] == {"amount": 700}
    assert review["decision"]["decision"] == "approved"
    assert review["decision"]["reviewer"] == "rita"
    assert review["decision"]["comment"] == "Partial"
    assert review["decision"]["overrides"] == [{"field": "amount", "before": 700, "after": 500}]


def test_whole_record_is_exactly_the_schema_applied_to_all_of_it(
    api, reviewer, worker, simple_version, sandbox_key
):
    """get_run validates the header through the schema and lays out steps and events itself
    (see there): the answer must be byte for byte what validating everything gives."""
    reviewed = start(make_version(REVIEW_DEFINITION, "Pay with review"), inputs={"amount": 700})
    worker.drain()
    approve(
        request=ReviewRequest.objects.get(run=reviewed),
        reviewer=reviewer,
        overrides={"amount": 500},
        comment="Partial",
    )
    worker.drain()
    api_renderer = rapidfolio_api.renderer
    # The live worker would pick up the failed and the pending run the moment they commit: they
    # are made, and read twice, inside one transaction, so their messages leave only after it.
    with transaction.atomic():
        failed = force_status(start(simple_version), "failed")
        pending = start(simple_version, api_key=sandbox_key[0])
        for run in (reviewed, failed, pending):
            response = api.get(f"/v1/runs/{run.public_id}")
            found = selectors.run_with_everything(run.public_id, viewer=sandbox_key[0])
            record = run_record(found, "http://testserver")
            assert record["steps"] or run is not reviewed
            validated = RunDetail.model_validate(record).model_dump()
            assert response.content.decode() == api_renderer.render(
                None, validated, response_status=200
            )


def test_run_shows_its_retry_and_the_retry_its_original(api, simple_version):
    original = force_status(start(simple_version), "failed")
    retry = start_run(
        version=simple_version,
        environment="sandbox",
        inputs=original.inputs,
        type=RunType.API,
        retry_of=original,
    )
    assert api.get(f"/v1/runs/{original.public_id}").json()["retries"] == [retry.public_id]
    assert api.get(f"/v1/runs/{retry.public_id}").json()["retry_of"] == original.public_id


def test_unknown_run_is_a_404_error(api):
    response = api.get("/v1/runs/run_nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- listing runs ---------------------------------------------------------------------------
def test_runs_list_is_paginated_by_cursor(api, simple_version):
    runs = [start(simple_version) for _ in range(5)]
    first = api.get("/v1/runs", {"limit": 2}).json()
    assert [r["id"] for r in first["runs"]] == [runs[4].public_id, runs[3].public_id]
    second = api.get("/v1/runs", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in second["runs"]] == [runs[2].public_id, runs[1].public_id]
    last = api.get("/v1/runs", {"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [r["id"] for r in last["runs"]] == [runs[0].public_id]
    assert last["next_cursor"] is None


def test_runs_list_filters_by_repeated_status(api, simple_version):
    completed = force_status(start(simple_version), "completed")
    cancelled = force_status(start(simple_version), "cancelled")
    start(simple_version)
    response = api.get("/v1/runs", {"status": ["completed", "cancelled"]})
    assert {r["id"] for r in response.json()["runs"]} == {
        completed.public_id,
        cancelled.public_id,
    }


def test_runs_list_filters_by_procedure_and_type(api, simple_version, operator):
    other = make_version(SIMPLE_DEFINITION, "Other procedure")
    wanted = start(simple_version)
    start(other)
    start(simple_version, user=operator)
    response = api.get("/v1/runs", {"procedure": simple_version.procedure.public_id, "type": "api"})
    assert [r["id"] for r in response.json()["runs"]] == [wanted.public_id]


def test_runs_list_filters_by_creation_date(api, simple_version):
    run = start(simple_version)
    today = timezone.localdate().isoformat()
    assert api.get("/v1/runs", {"created_from": today}).json()["runs"][0]["id"] == run.public_id
    assert api.get("/v1/runs", {"created_to": "2000-01-01"}).json()["runs"] == []


def test_runs_list_rejects_an_end_date_before_the_start_date(api, db):
    response = api.get("/v1/runs", {"created_from": "2025-02-01", "created_to": "2025-01-01"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "created_to"


def test_runs_list_rejects_an_unknown_procedure_filter(api, db):
    response = api.get("/v1/runs", {"procedure": "proc_nope"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_filters"


def test_runs_list_rejects_a_broken_cursor(api, db):
    response = api.get("/v1/runs", {"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_runs_list_limit_is_capped_at_200(api, db):
    response = api.get("/v1/runs", {"limit": 201})
    assert response.status_code == 422


# --- cancel and retry -----------------------------------------------------------------------
def test_run_is_cancelled_through_the_api(api, simple_version, sandbox_key):
    run = start(simple_version)
    response = api.post(f"/v1/runs/{run.public_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.events.last().actor == f"api_key:{sandbox_key[0].prefix}"


def test_finished_run_cannot_be_cancelled(api, simple_version):
    run = force_status(start(simple_version), "completed")
    response = api.post(f"/v1/runs/{run.public_id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cancel_not_allowed"


def test_transiently_failed_run_is_retried_through_the_api(api, simple_version, sandbox_key):
    original = force_status(start(simple_version), "failed")
    response = api.post(f"/v1/runs/{original.public_id}/retry")
    assert response.status_code == 202
    retry = Run.objects.get(public_id=response.json()["id"])
    assert retry.retry_of == original
    assert retry.type == RunType.API
    assert retry.started_by_api_key == sandbox_key[0]


def test_permanently_failed_run_cannot_be_retried_through_the_api(api, simple_version):
    original = force_status(start(simple_version), "failed", failure_kind=FailureKind.PERMANENT)
    response = api.post(f"/v1/runs/{original.public_id}/retry")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "retry_not_allowed"
