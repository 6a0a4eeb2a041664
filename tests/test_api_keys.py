"""API keys: bearer or X-API-Key, scoped to one environment, revocable, shown once."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from runs.api_keys import create_api_key, hash_key, revoke
from runs.models import ApiKey, Run, RunType
from runs.services import start_run


@pytest.fixture
def sandbox_key(db):
    return create_api_key(name="Billing backend", environment="sandbox")


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def start(version, environment):
    return start_run(
        version=version,
        environment=environment,
        inputs={"amount": 5, "currency": "usd"},
        type=RunType.API,
    )


def test_request_without_key_is_401(client, db):
    response = client.get("/v1/runs")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_unknown_key_is_401(client, db):
    assert client.get("/v1/runs", **bearer("rf_test_made_up")).status_code == 401


def test_revoked_key_is_401(client, sandbox_key):
    api_key, raw = sandbox_key
    revoke(api_key)
    assert client.get("/v1/runs", **bearer(raw)).status_code == 401


def test_bearer_key_is_accepted(client, sandbox_key):
    assert client.get("/v1/runs", **bearer(sandbox_key[1])).status_code == 200


def test_x_api_key_header_is_accepted(client, sandbox_key):
    assert client.get("/v1/runs", HTTP_X_API_KEY=sandbox_key[1]).status_code == 200


def test_last_use_of_a_key_is_recorded(client, sandbox_key):
    api_key, raw = sandbox_key
    client.get("/v1/procedures", **bearer(raw))
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


def test_sandbox_key_cannot_start_a_live_run(client, sandbox_key, simple_version):
    response = client.post(
        f"/v1/procedures/{simple_version.procedure.public_id}/live",
        data=json.dumps({"amount": 5, "currency": "usd"}),
        content_type="application/json",
        **bearer(sandbox_key[1]),
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_environment"
    assert Run.objects.count() == 0


def test_live_key_cannot_start_a_sandbox_run(client, simple_version):
    _, raw = create_api_key(name="Prod backend", environment="live")
    response = client.post(
        f"/v1/procedures/{simple_version.procedure.public_id}/sandbox",
        data=json.dumps({"amount": 5, "currency": "usd"}),
        content_type="application/json",
        **bearer(raw),
    )
    assert response.status_code == 403


def test_sandbox_key_reads_a_live_run_as_not_found(client, sandbox_key, simple_version):
    live_run = start(simple_version, "live")
    response = client.get(f"/v1/runs/{live_run.public_id}", **bearer(sandbox_key[1]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_sandbox_key_cannot_cancel_a_live_run(client, sandbox_key, simple_version):
    live_run = start(simple_version, "live")
    response = client.post(f"/v1/runs/{live_run.public_id}/cancel", **bearer(sandbox_key[1]))
    assert response.status_code == 404
    live_run.refresh_from_db()
    assert live_run.status == "pending"


def test_runs_list_shows_only_the_key_environment(client, sandbox_key, simple_version):
    sandbox_run = start(simple_version, "sandbox")
    start(simple_version, "live")
    runs = client.get("/v1/runs", **bearer(sandbox_key[1])).json()["runs"]
    assert [r["id"] for r in runs] == [sandbox_run.public_id]


def test_runs_list_of_the_other_environment_is_403(client, sandbox_key, db):
    response = client.get("/v1/runs", {"environment": "live"}, **bearer(sandbox_key[1]))
    assert response.status_code == 403


def test_create_api_key_command_prints_the_key_once_and_stores_its_hash(db):
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_key", "--name", "Nightly job", "--environment", "live", stdout=out, stderr=err
    )
    raw = out.getvalue().strip()
    api_key = ApiKey.objects.get(name="Nightly job")
    assert raw.startswith("rf_live_")
    assert api_key.environment == "live"
    assert api_key.key_hash == hash_key(raw)
    assert raw not in str(ApiKey.objects.values().get())
    assert "cannot be shown again" in err.getvalue()


def test_create_api_key_command_refuses_an_unknown_environment(db):
    with pytest.raises(CommandError):
        call_command("create_api_key", "--name", "x", "--environment", "prod")


def test_revoke_api_key_command_revokes_by_prefix(client, sandbox_key):
    api_key, raw = sandbox_key
    out = StringIO()
    call_command("revoke_api_key", api_key.prefix, stdout=out)
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert client.get("/v1/runs", **bearer(raw)).status_code == 401


def test_revoke_api_key_command_refuses_an_unknown_prefix(db):
    with pytest.raises(CommandError):
        call_command("revoke_api_key", "rf_test_nope")


def test_key_revoked_in_admin_can_no_longer_authenticate(client, admin_client, sandbox_key):
    api_key, raw = sandbox_key
    admin_client.post(
        reverse("admin:runs_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [api_key.pk]},
    )
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert client.get("/v1/runs", **bearer(raw)).status_code == 401
