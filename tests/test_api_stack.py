"""The HTTP API runs on a lean middleware stack of its own (rapidfolio/handlers.py): what it
keeps, what it leaves out, and that production's WSGI application routes each path to the
right one."""

import io
import json
from wsgiref.util import setup_testing_defaults

import pytest
from django.conf import settings

from rapidfolio.handlers import serves_api
from rapidfolio.test_client import Client
from runs.api_keys import create_api_key
from runs.models import Run
from tests.conftest import SIMPLE_DEFINITION, make_user, make_version

DASHBOARD_ONLY = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
)


def test_the_api_paths_are_the_api_stack_s_and_its_docs_are_the_dashboard_s():
    assert serves_api("/v1/runs/run_123")
    assert serves_api("/v1/procedures/proc_1/sandbox")
    assert not serves_api("/v1/docs")
    assert not serves_api("/v1/openapi.json")
    assert not serves_api("/runs/")
    assert not serves_api("/v1")  # Django's own 404 or slash redirect, as the dashboard's


def test_the_api_stack_keeps_the_log_errors_metrics_and_security_headers():
    kept = set(settings.API_MIDDLEWARE)
    assert "rapidfolio.request_log.RequestLogMiddleware" in kept
    assert "rapidfolio.api_errors.ApiErrorsMiddleware" in kept
    assert "rapidfolio.metrics.RequestMetricsMiddleware" in kept
    assert "django.middleware.security.SecurityMiddleware" in kept
    assert kept.isdisjoint(DASHBOARD_ONLY)
    # Everything it keeps is in the dashboard's stack too, in the same order.
    assert [m for m in settings.MIDDLEWARE if m in kept] == settings.API_MIDDLEWARE


@pytest.fixture
def started(db):
    version = make_version(SIMPLE_DEFINITION, "API stack")
    _, raw = create_api_key(name="Stack", environment="sandbox")
    return version, raw


def test_an_api_request_answers_with_the_security_headers_and_sets_no_cookie(started):
    version, raw = started
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post(
        f"/v1/procedures/{version.procedure.public_id}/sandbox",
        data=json.dumps({"amount": 10, "currency": "usd"}),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in response.headers
    assert not response.cookies  # no session, no CSRF token
    assert "Cookie" not in response.headers.get("Vary", "")


def test_a_signed_in_dashboard_session_does_not_authenticate_the_api(started):
    version, _ = started
    browser = Client()
    browser.force_login(make_user("olivia"))
    assert browser.get("/runs/").status_code in (200, 403)  # the session works on the dashboard
    response = browser.post(
        f"/v1/procedures/{version.procedure.public_id}/sandbox",
        data=json.dumps({"amount": 10, "currency": "usd"}),
        content_type="application/json",
    )
    assert response.status_code == 401
    assert response.json()["error"]
    assert not Run.objects.exists()


def _wsgi_get(path: str, **environ) -> tuple[str, dict, bytes]:
    from rapidfolio.wsgi import application

    env = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO(), **environ}
    setup_testing_defaults(env)
    env["HTTP_HOST"] = "127.0.0.1"
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered["status"], answered["headers"] = status, dict(headers)

    body = b"".join(application(env, start_response))
    return answered["status"], answered["headers"], body


@pytest.mark.django_db(transaction=True)
def test_production_s_application_serves_the_api_without_the_dashboard_stack():
    _, raw = create_api_key(name="WSGI", environment="sandbox")
    status, headers, body = _wsgi_get("/v1/runs", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert status.startswith("200"), body
    assert "Set-Cookie" not in headers
    assert "Cookie" not in headers.get("Vary", "")
    # The dashboard's pages still have theirs: a CSRF-protected sign-in form sets its cookie.
    status, headers, _ = _wsgi_get("/login/")
    assert status.startswith("200")
    assert "csrftoken" in headers.get("Set-Cookie", "")
