"""Logs: one line per request, with its id, who made it and how it ended; client errors at INFO,
server errors at ERROR with the traceback; the run and procedure on every line of the work that
executes a run; JSON lines in production; Sentry only when SENTRY_DSN is set.

What is checked is what the configured handler writes (the settings' LOGGING, rapidfolio/
log_context.py), its stream swapped for a buffer, in production's format unless a test says
otherwise.
"""

import io
import json
import logging
import os
import subprocess
import sys

import dramatiq
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import path

from rapidfolio import log_context
from rapidfolio.log_context import JsonFormatter, PlainFormatter
from rapidfolio.roles import OPERATORS
from rapidfolio.test_client import Client
from runs import engine
from runs.api_keys import create_api_key
from runs.models import RunType, WebhookEndpoint
from runs.services import start_run
from tests.conftest import make_user


def boom(request):
    raise RuntimeError("the ledger exploded")


urlpatterns = [path("boom/", boom)]  # for @pytest.mark.urls("tests.test_logging")


class Written:
    def __init__(self, stream: io.StringIO):
        self.stream = stream

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def requests(self) -> list[dict]:
        return [line for line in self.lines() if line["logger"] == "rapidfolio.request"]


@pytest.fixture
def console():
    handler = logging.getHandlerByName("console")
    stream = io.StringIO()
    previous_stream, previous_formatter = handler.setStream(stream), handler.formatter
    yield handler, stream
    handler.setStream(previous_stream)
    handler.setFormatter(previous_formatter)


@pytest.fixture
def written(console) -> Written:
    """What the handler writes from here on, as LOG_FORMAT=json writes it."""
    handler, stream = console
    handler.setFormatter(JsonFormatter())
    return Written(stream)


@pytest.fixture
def signed_in(db):
    client = Client()
    client.force_login(make_user("olivia", OPERATORS))
    return client


# --- one line per request -------------------------------------------------------------------
def test_a_request_is_one_line_with_its_id_method_path_status_duration_and_user(signed_in, written):
    response = signed_in.get("/runs/?status=failed")
    assert response.status_code == 200
    [line] = written.lines()
    assert line["logger"] == "rapidfolio.request"
    assert line["level"] == "INFO"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/runs/", 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["user"] == "olivia"
    assert line["request_id"] == response["X-Request-ID"]
    assert len(line["request_id"]) == 32  # none was sent: a new one
    assert "failed" not in json.dumps(line)  # the query string is not logged


def test_the_clients_request_id_is_logged_and_echoed(signed_in, written):
    response = signed_in.get("/runs/", HTTP_X_REQUEST_ID="lb-7f3a2c91-0001")
    assert response["X-Request-ID"] == "lb-7f3a2c91-0001"
    assert written.requests()[0]["request_id"] == "lb-7f3a2c91-0001"


def test_a_malformed_request_id_is_replaced_by_a_new_one(signed_in, written):
    response = signed_in.get("/runs/", HTTP_X_REQUEST_ID="forged\nERROR fake line")
    assert response["X-Request-ID"] != "forged\nERROR fake line"
    assert len(response["X-Request-ID"]) == 32
    assert written.requests()[0]["request_id"] == response["X-Request-ID"]


def test_a_request_about_a_run_names_it(signed_in, written):
    signed_in.get("/runs/run_01jfq3v6c9k2m8x4w7t5r0y1zb/")
    [line] = written.lines()
    assert line["status"] == 404
    assert line["run"] == "run_01jfq3v6c9k2m8x4w7t5r0y1zb"


# --- how requests end -----------------------------------------------------------------------
def test_an_unknown_page_is_one_info_line(signed_in, written):
    response = signed_in.get("/no-such-page/")
    assert response.status_code == 404
    [line] = written.lines()  # not also django.request's "Not Found" WARNING
    assert (line["level"], line["status"]) == ("INFO", 404)


def test_an_invalid_api_request_is_one_info_line_with_the_api_keys_prefix(simple_version, written):
    api_key, raw_key = create_api_key(name="Billing backend", environment="sandbox")
    response = Client().post(
        f"/v1/procedures/{simple_version.procedure.public_id}/sandbox",
        data=json.dumps({"amount": 0, "currency": "yen"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )
    assert response.status_code == 422
    [line] = written.lines()
    assert (line["level"], line["status"], line["method"]) == ("INFO", 422, "POST")
    assert line["api_key"] == api_key.prefix
    assert line["procedure"] == simple_version.procedure.public_id  # named by the URL
    assert raw_key not in json.dumps(line)
    assert "user" not in line


def test_a_csrf_refusal_is_one_info_line_that_says_why(db, written):
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": "olivia"})
    assert response.status_code == 403
    [line] = written.lines()  # not also django.security.csrf's WARNING
    assert (line["level"], line["status"]) == ("INFO", 403)
    assert "CSRF" in line["detail"]


@pytest.mark.urls("tests.test_logging")
def test_a_server_error_is_one_error_line_with_its_traceback(db, written):
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    [line] = written.lines()  # Django's own traceback line is folded into it
    assert (line["level"], line["status"], line["path"]) == ("ERROR", 500, "/boom/")
    assert "Traceback" in line["exc_info"]
    assert 'raise RuntimeError("the ledger exploded")' in line["exc_info"]
    assert line["detail"] == "Internal Server Error: /boom/"


def test_the_development_servers_access_line_is_left_to_ours(written):
    server = logging.getLogger("django.server")
    server.info('"%s" %s %s', "GET /runs/ HTTP/1.1", "200", "5120")
    server.error("code %d, message %s", 400, "Bad request syntax")
    [line] = written.lines()
    assert line["message"] == "code 400, message Bad request syntax"


# --- formats --------------------------------------------------------------------------------
def test_the_plain_format_is_one_line_with_the_fields_appended(signed_in, console):
    handler, stream = console
    handler.setFormatter(PlainFormatter())
    signed_in.get("/runs/", HTTP_X_REQUEST_ID="req-42")
    [line] = stream.getvalue().splitlines()
    assert " INFO rapidfolio.request: GET /runs/ 200 " in line
    assert line.endswith("request_id=req-42 client_ip=127.0.0.1 user=olivia")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "plain"),  # the embedded default: make run
        ({"REDIS_URL": "redis://r:6379/0"}, "json"),  # workers of their own: production
        ({"REDIS_URL": "redis://r:6379/0", "DEBUG": "1"}, "plain"),
        ({"LOG_FORMAT": "json"}, "json"),
        ({"REDIS_URL": "redis://r:6379/0", "LOG_FORMAT": "Plain"}, "plain"),
    ],
    ids=["embedded", "production", "debug", "asked-json", "asked-plain"],
)
def test_log_format_is_json_in_production_and_plain_on_make_run(environ, expected):
    assert log_context.log_format(environ) == expected


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT must be json or plain"):
        log_context.log_format({"LOG_FORMAT": "xml"})


def test_every_line_is_json_that_parses_with_the_scopes_fields(written):
    with log_context.bind(request_id="r-1", run="run_x"):
        logging.getLogger("runs.engine.tools").info('tool "%s" said\n%s', "stripe", {"a": 1})
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("runs.engine.tools").exception("tool raised")
    first, second = written.lines()
    assert first["message"] == "tool \"stripe\" said\n{'a': 1}"
    assert (first["request_id"], first["run"]) == ("r-1", "run_x")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: bad" in second["exc_info"]


# --- runs -----------------------------------------------------------------------------------
def start(version, **kwargs):
    return start_run(
        version=version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type=RunType.API,
        **kwargs,
    )


def test_a_drive_logs_its_run_and_procedure(simple_version, written):
    run = start(simple_version)
    engine.drive(run.pk)
    [line] = [line for line in written.lines() if line["logger"] == "runs.engine.driver"]
    assert line["message"] == f"run {run.public_id} is completed"
    assert line["run"] == run.public_id
    assert line["procedure"] == simple_version.procedure.public_id
    assert log_context.current() == {}  # nothing left over for the next line


def test_a_run_executed_by_a_worker_logs_the_message_the_run_and_the_procedure(
    simple_version, worker, written
):
    run = start(simple_version)
    worker.drain()
    [line] = [line for line in written.lines() if line["logger"] == "runs.engine.driver"]
    assert line["actor"] == "execute_run" and line["message_id"]
    assert (line["run"], line["procedure"]) == (run.public_id, simple_version.procedure.public_id)


def test_a_webhook_delivery_logs_its_run_and_procedure(simple_version, worker, written, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    hook = WebhookEndpoint(
        url="http://127.0.0.1:9/closed", environment="sandbox", events=["run.completed"]
    )
    hook.set_secret("whsec_logs")
    hook.save()
    run = start(simple_version)
    worker.drain()
    [line] = [line for line in written.lines() if line["logger"] == "runs.tasks"]
    assert line["message"] == "webhook run.completed attempt 1: not delivered (recorded on the run)"
    assert line["actor"] == "deliver_webhook" and line["delivery"].startswith("whd_")
    assert (line["run"], line["procedure"]) == (run.public_id, simple_version.procedure.public_id)


def test_a_messages_fields_end_with_the_message(written):
    # What a worker thread goes through for each message, in this thread.
    middleware = log_context.MessageContext()
    message = dramatiq.Message(
        queue_name="runs", actor_name="execute_run", args=(1,), kwargs={}, options={}
    )
    middleware.before_process_message(None, message)
    log_context.add(run="run_x", procedure="proc_y")
    logging.getLogger("dramatiq.worker").error("Failed to process message %s", message)
    middleware.after_process_message(None, message, exception=RuntimeError("crash"))
    logging.getLogger("dramatiq.worker").info("next")
    failed, after = written.lines()
    assert failed["actor"] == "execute_run" and failed["message_id"] == message.message_id
    assert (failed["run"], failed["procedure"]) == ("run_x", "proc_y")
    assert {"actor", "message_id", "run", "procedure"}.isdisjoint(after)


# --- Sentry ---------------------------------------------------------------------------------
# The settings read twice by one process, as Django imports them: without SENTRY_DSN, then with
# one. Nothing listens on port 9: no event is sent, and none could leave this machine.
SENTRY_PROBE = """
import json, os, runpy, sys
read = {}
runpy.run_path("rapidfolio/settings.py")
read["imported without a dsn"] = "sentry_sdk" in sys.modules
import sentry_sdk
read["active without a dsn"] = sentry_sdk.get_client().is_active()
os.environ.update(SENTRY_DSN="http://public@127.0.0.1:9/1", SENTRY_ENVIRONMENT="staging")
runpy.run_path("rapidfolio/settings.py")
client = sentry_sdk.get_client()
read["with a dsn"] = {
    "active": client.is_active(),
    "environment": client.options["environment"],
    "send_default_pii": client.options["send_default_pii"],
    "integrations": sorted(client.integrations),
}
print(json.dumps(read))
"""


@pytest.fixture(scope="module")
def sentry_probed(tmp_path_factory) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    clean.update(RAPIDFOLIO_VAR_DIR=str(tmp_path_factory.mktemp("var")))
    done = subprocess.run(
        [sys.executable, "-c", SENTRY_PROBE],
        env=clean,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_a_dsn_sentry_is_neither_imported_nor_initialised(sentry_probed):
    assert sentry_probed["imported without a dsn"] is False
    assert sentry_probed["active without a dsn"] is False


def test_with_a_dsn_sentry_reports_django_and_worker_errors_without_personal_data(sentry_probed):
    probed = sentry_probed["with a dsn"]
    assert probed["active"] is True
    assert probed["environment"] == "staging"
    assert probed["send_default_pii"] is False
    assert {"django", "dramatiq"} <= set(probed["integrations"])
