"""Every error on the API's paths (/v1/ and /hooks/) is JSON, {"error": {code, message,
details}}: bodies too large or badly framed, bodies that do not say they are JSON, unknown
paths, wrong methods, unhandled exceptions, and credentials that do not hold.

First each endpoint against each error kind, then each kind in depth. Chunked bodies are sent
with http.client to live servers, as the test client cannot send one: Django's own server (it
cannot read them, so it must refuse them) and gunicorn (it decodes them, so they are read)."""

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.urls import path

from procedures.models import RejectedDelivery, Trigger
from rapidfolio import urls as project_urls
from rapidfolio.api import api as rapidfolio_api
from rapidfolio.test_client import Client
from runs import api_keys
from runs.api_keys import create_api_key, revoke
from runs.models import Run, RunType
from runs.services import start_run
from runs.triggers import hooks
from tests.conftest import SIMPLE_DEFINITION, make_version

BASE_DIR = Path(__file__).resolve().parent.parent
LIMIT = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
INPUTS = {"amount": 7, "currency": "usd"}

# name: (method, path); {procedure}, {run}, {stripe} and {linear} are the world's ids.
ENDPOINTS = {
    "list-procedures": ("GET", "/v1/procedures"),
    "read-procedure": ("GET", "/v1/procedures/{procedure}"),
    "start-run": ("POST", "/v1/procedures/{procedure}/sandbox"),
    "list-runs": ("GET", "/v1/runs"),
    "read-run": ("GET", "/v1/runs/{run}"),
    "run-evidence": ("GET", "/v1/runs/{run}/evidence"),
    "cancel-run": ("POST", "/v1/runs/{run}/cancel"),
    "retry-run": ("POST", "/v1/runs/{run}/retry"),
    "openapi-document": ("GET", "/v1/openapi.json"),
    "docs-page": ("GET", "/v1/docs"),
    "stripe-hook": ("POST", "/hooks/stripe/{stripe}"),
    "linear-hook": ("POST", "/hooks/linear/{linear}"),
}
KEY_ENDPOINTS = [
    "list-procedures",
    "read-procedure",
    "start-run",
    "list-runs",
    "read-run",
    "run-evidence",
    "cancel-run",
    "retry-run",
]


def _failing_view(request):
    raise RuntimeError("a bug in a view")


# For @pytest.mark.urls(__name__): the product's URLs, and a view that fails under each prefix.
urlpatterns = [
    path("v1/test-only/fails", _failing_view),
    path("hooks/test-only/fails", _failing_view),
    *project_urls.urlpatterns,
]


def make_trigger(version, kind: str) -> Trigger:
    trigger = Trigger(
        procedure=version.procedure,
        environment="sandbox",
        kind=kind,
        name=f"{kind} trigger",
        input_mapping={"amount": "event.data.object.amount", "currency": "'usd'"},
    )
    trigger.set_signing_secret(f"{kind}_signing_secret")
    trigger.save()
    return trigger


@pytest.fixture
def world(db):
    version = make_version(SIMPLE_DEFINITION, name="Classify payment")
    _, raw = create_api_key(name="Billing backend", environment="sandbox")
    run = start_run(version=version, environment="sandbox", inputs=INPUTS, type=RunType.API)
    ids = {
        "procedure": version.procedure.public_id,
        "run": run.public_id,
        "stripe": make_trigger(version, "stripe").public_id,
        "linear": make_trigger(version, "linear").public_id,
    }
    return SimpleNamespace(version=version, raw=raw, run=run, ids=ids)


@pytest.fixture
def api(world):
    """A client with a valid key that, like a real server, checks CSRF and answers a view's
    exception rather than raising it."""
    return Client(
        enforce_csrf_checks=True,
        raise_request_exception=False,
        HTTP_AUTHORIZATION=f"Bearer {world.raw}",
    )


def url_of(world, endpoint: str) -> str:
    return ENDPOINTS[endpoint][1].format(**world.ids)


def call(client, world, endpoint, *, method=None, suffix="", body=b"", **extra):
    extra.setdefault("content_type", "application/json")
    return client.generic(
        method or ENDPOINTS[endpoint][0], url_of(world, endpoint) + suffix, body, **extra
    )


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code, error
    assert error["message"]
    return error


def nothing_recorded(world) -> bool:
    return (
        Run.objects.count() == 1
        and Run.objects.get().status == "pending"
        and not RejectedDelivery.objects.exists()
    )


# --- each endpoint against each error kind ---------------------------------------------------
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_over_the_size_limit_is_a_413_on_every_endpoint(api, world, endpoint):
    body = b'"' + b"x" * LIMIT + b'"'
    error = assert_error(call(api, world, endpoint, body=body), 413, "body_too_large")
    assert error["details"] == {"max_bytes": LIMIT}
    assert nothing_recorded(world)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_path_below_an_endpoint_that_does_not_exist_is_a_404(api, world, endpoint):
    url = url_of(world, endpoint) + "/no/such/path"
    error = assert_error(call(api, world, endpoint, suffix="/no/such/path"), 404, "not_found")
    assert error["message"] == f"There is no API endpoint at {url}."


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_method_an_endpoint_does_not_take_is_a_405_naming_the_ones_it_does(api, world, endpoint):
    response = call(api, world, endpoint, method="DELETE")
    assert_error(response, 405, "method_not_allowed")
    assert ENDPOINTS[endpoint][0] in response["Allow"].split(", ")


def _break(endpoint: str, monkeypatch) -> None:
    """Make the code behind `endpoint` raise, as a bug would."""

    def fail(*args, **kwargs):
        raise RuntimeError(f"a bug behind {endpoint}")

    if endpoint == "openapi-document":
        monkeypatch.setattr(rapidfolio_api, "get_openapi_schema", fail)
    elif endpoint == "docs-page":
        monkeypatch.setattr(rapidfolio_api.docs, "render_page", fail)
    elif endpoint.endswith("-hook"):
        monkeypatch.setattr(hooks, "_trigger", fail)
    else:
        monkeypatch.setattr(api_keys, "authenticate", fail)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_unhandled_exception_is_a_500_whose_traceback_is_logged(
    api, world, endpoint, monkeypatch, caplog
):
    _break(endpoint, monkeypatch)
    body = json.dumps(INPUTS) if ENDPOINTS[endpoint][0] == "POST" else b""
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = call(api, world, endpoint, body=body)
    error = assert_error(response, 500, "server_error")
    assert "a bug" not in error["message"]  # what failed is for the log, not for the client
    [logged] = [r for r in caplog.records if r.name == "django.request" and r.exc_info]
    assert str(logged.exc_info[1]) == f"a bug behind {endpoint}"


# --- credentials: every one presented must hold ----------------------------------------------
@pytest.fixture
def other_keys(world):
    revoked_key, revoked = create_api_key(name="Old backend", environment="sandbox")
    revoke(revoked_key)
    _, other = create_api_key(name="Second backend", environment="sandbox")
    return SimpleNamespace(revoked=revoked, other=other)


def credentials(case: str, valid: str, keys) -> dict:
    return {
        "revoked-bearer-with-a-valid-x-api-key": (f"Bearer {keys.revoked}", valid),
        "unknown-bearer-with-a-valid-x-api-key": ("Bearer rf_test_made_up", valid),
        "malformed-authorization-with-a-valid-x-api-key": (f"Basic {valid}", valid),
        "valid-bearer-with-a-revoked-x-api-key": (f"Bearer {valid}", keys.revoked),
        "two-valid-keys-that-disagree": (f"Bearer {valid}", keys.other),
    }[case]


CREDENTIAL_CASES = [
    "revoked-bearer-with-a-valid-x-api-key",
    "unknown-bearer-with-a-valid-x-api-key",
    "malformed-authorization-with-a-valid-x-api-key",
    "valid-bearer-with-a-revoked-x-api-key",
    "two-valid-keys-that-disagree",
]


@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS)
@pytest.mark.parametrize("case", CREDENTIAL_CASES)
def test_a_credential_that_does_not_hold_fails_the_request_whatever_the_other_says(
    world, other_keys, endpoint, case
):
    authorization, x_api_key = credentials(case, world.raw, other_keys)
    client = Client(HTTP_AUTHORIZATION=authorization, HTTP_X_API_KEY=x_api_key)
    body = json.dumps(INPUTS) if ENDPOINTS[endpoint][0] == "POST" else b""
    error = assert_error(call(client, world, endpoint, body=body), 401, "unauthorized")
    assert error["details"]["reason"] in {"malformed", "unknown_or_revoked", "conflicting"}
    assert nothing_recorded(world)


def test_two_keys_that_disagree_are_named_in_the_answer(world, other_keys):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {world.raw}", HTTP_X_API_KEY=other_keys.other)
    error = assert_error(client.get("/v1/runs"), 401, "unauthorized")
    assert error["details"] == {"reason": "conflicting", "headers": ["Authorization", "X-API-Key"]}
    assert "different keys" in error["message"]


def test_the_same_key_in_both_headers_is_accepted(world):
    client = Client(HTTP_AUTHORIZATION=f"bearer {world.raw}", HTTP_X_API_KEY=world.raw)
    assert client.get("/v1/runs").status_code == 200


def test_an_empty_authorization_header_is_refused_not_ignored(world):
    client = Client(HTTP_AUTHORIZATION="", HTTP_X_API_KEY=world.raw)
    error = assert_error(client.get("/v1/runs"), 401, "unauthorized")
    assert error["details"]["reason"] == "malformed"


def test_no_key_at_all_is_a_401_saying_which_headers_to_send(world):
    error = assert_error(Client().get("/v1/runs"), 401, "unauthorized")
    assert "Authorization: Bearer" in error["message"] and "X-API-Key" in error["message"]


def test_the_openapi_document_says_which_headers_carry_the_key(client, db):
    document = client.get("/v1/openapi.json").json()
    bearer, header = document["components"]["securitySchemes"].values()
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert (header["type"], header["in"], header["name"]) == ("apiKey", "header", "X-API-Key")
    assert "same key" in bearer["description"] and "Authorization" in header["description"]
    assert "X-API-Key" in document["info"]["description"]


# --- bodies must say they are JSON -----------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
    ids=["text-plain", "missing", "form", "not-utf-8"],
)
def test_a_body_not_declared_as_json_is_a_415_naming_the_expected_type(api, world, content_type):
    body = json.dumps(INPUTS)  # valid JSON: the declared type is what is refused
    response = call(api, world, "start-run", body=body, CONTENT_TYPE=content_type)
    error = assert_error(response, 415, "unsupported_media_type")
    assert error["details"] == {"expected": "application/json", "received": content_type or None}
    assert "application/json" in error["message"]
    assert nothing_recorded(world)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=UTF-8", "application/inputs+json"],
)
def test_a_body_declared_as_json_in_utf_8_starts_the_run(api, world, content_type):
    response = call(api, world, "start-run", body=json.dumps(INPUTS), content_type=content_type)
    assert response.status_code == 202
    assert Run.objects.get(public_id=response.json()["id"]).inputs == INPUTS


def test_the_webhooks_take_the_body_as_signed_whatever_its_declared_type(api, world):
    # The signature covers the raw bytes; a bad one is refused (and counted) as such, not 415.
    response = call(api, world, "stripe-hook", body=b"garbage", content_type="text/plain")
    assert_error(response, 400, "delivery_rejected")


# --- framing ---------------------------------------------------------------------------------
def test_a_content_length_that_is_not_a_number_is_a_400_not_an_empty_body(api, world):
    body = json.dumps(INPUTS)
    response = call(api, world, "start-run", body=body, CONTENT_LENGTH="17x")
    assert "Content-Length" in assert_error(response, 400, "bad_request")["message"]
    assert nothing_recorded(world)


def test_content_length_and_transfer_encoding_together_are_a_400(api, world):
    body = json.dumps(INPUTS)
    response = call(api, world, "start-run", body=body, HTTP_TRANSFER_ENCODING="chunked")
    assert "not both" in assert_error(response, 400, "bad_request")["message"]
    assert nothing_recorded(world)


class _SenderWentAway:
    """A request body whose sender stopped before Content-Length bytes arrived."""

    def read(self, size=-1):
        raise OSError("connection reset by peer")

    def readline(self, size=-1):
        raise OSError("connection reset by peer")


@pytest.mark.parametrize("endpoint", ["start-run", "stripe-hook", "linear-hook"])
def test_a_body_the_sender_stopped_sending_is_a_400_not_a_server_error(api, world, endpoint):
    body = json.dumps(INPUTS)
    response = call(api, world, endpoint, body=body, **{"wsgi.input": _SenderWentAway()})
    assert "could not be read" in assert_error(response, 400, "bad_request")["message"]
    assert nothing_recorded(world)


# --- paths that are no endpoint, and failures outside any endpoint ---------------------------
@pytest.mark.parametrize(
    "url", ["/v1/", "/v1/nothing/here", "/hooks/", "/hooks/nothing", "/hooks/stripe/"]
)
def test_an_unknown_api_path_is_a_404_even_for_a_post_without_a_csrf_token(db, url):
    client = Client(enforce_csrf_checks=True)
    assert_error(client.get(url), 404, "not_found")
    assert_error(client.post(url, "{}", content_type="application/json"), 404, "not_found")


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("url", ["/v1/test-only/fails", "/hooks/test-only/fails"])
def test_a_view_that_raises_is_a_json_500_and_its_traceback_is_logged(db, url, caplog):
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.post(url, "{}", content_type="application/json")
    assert_error(response, 500, "server_error")
    [logged] = [r for r in caplog.records if r.name == "django.request" and r.exc_info]
    assert logged.exc_info[0] is RuntimeError
    assert url in logged.getMessage()


def test_pages_outside_the_api_keep_their_html_errors(db):
    response = Client().get("/runs/not-a-page/nope")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- chunked bodies, against real servers ----------------------------------------------------
def send_chunked(host: str, port: int, url: str, body: bytes, headers: dict):
    """POST `body` with Transfer-Encoding: chunked and no Content-Length (http.client frames an
    iterable body that way)."""
    connection_ = http.client.HTTPConnection(host, port, timeout=30)
    try:
        pieces = (body[start : start + 16384] for start in range(0, len(body), 16384))
        connection_.request("POST", url, body=pieces, headers=headers)
        response = connection_.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection_.close()


@pytest.mark.parametrize("endpoint", ["start-run", "stripe-hook", "linear-hook"])
def test_a_chunked_body_the_development_server_cannot_read_is_a_411_not_an_empty_body(
    live_server, world, endpoint
):
    address = urlsplit(live_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(
            f"POST {url_of(world, endpoint)} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: Bearer {world.raw}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        # The refusal comes before any of the body is read, so it is read before the body is
        # sent (a server that closes with a body unread resets the connection, answer lost).
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = response.read()
    assert response.status == 411
    assert response.getheader("Content-Type").startswith("application/json")
    assert json.loads(answer)["error"]["code"] == "length_required"
    assert nothing_recorded(world)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"], safe="")
    if db.get("PASSWORD"):
        user += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{user}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory):
    """gunicorn serving the app on the test database, as production and the benchmark do."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "rapidfolio.wsgi:application"]
            + ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread"],
            cwd=BASE_DIR,
            env={**os.environ, "DATABASE_URL": _test_database_url()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                probe.request("GET", "/v1/openapi.json")
                assert probe.getresponse().status == 200, log_path.read_text()
                probe.close()
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_gunicorn_hands_over_a_chunked_body_whole_and_the_run_gets_it(gunicorn, transactional_db):
    version = make_version(SIMPLE_DEFINITION, name="Classify payment")
    _, raw = create_api_key(name="Billing backend", environment="sandbox")
    status, _, answer = send_chunked(
        "127.0.0.1",
        gunicorn,
        f"/v1/procedures/{version.procedure.public_id}/sandbox",
        json.dumps({"currency": "eur", "amount": 4200}).encode(),
        {"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
    )
    assert status == 202, answer
    run = Run.objects.get(public_id=json.loads(answer)["id"])
    assert run.inputs == {"currency": "eur", "amount": 4200}


def test_gunicorn_refuses_a_chunked_body_over_the_limit_with_a_413(gunicorn, transactional_db):
    status, content_type, answer = send_chunked(
        "127.0.0.1",
        gunicorn,
        "/v1/procedures/proc_any/sandbox",
        b" " * (LIMIT + 100_000),
        {"Content-Type": "application/json"},
    )
    assert status == 413
    assert content_type.startswith("application/json")
    assert json.loads(answer)["error"]["details"] == {"max_bytes": LIMIT}
