"""Production headers: with HTTPS=1 plain HTTP is redirected, the session and CSRF cookies are
Secure, HSTS is sent, and `manage.py check --deploy` has no security warning. A proxy's
X-Forwarded-Proto is trusted only when HTTPS_PROXY_HEADER names it: otherwise any client could
claim HTTPS.

The settings are read from the environment by a fresh process, as tests/test_settings.py does;
the behaviour is then checked in this one with exactly the values that process read.
"""

import base64
import json
import os
import re
import subprocess
import sys

import pytest
from django.conf import settings as project_settings
from django.core.checks import run_checks

from rapidfolio.test_client import Client
from tests.conftest import make_user

NAMES = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
)
# The environments the settings are read under; one process reads them all (each a fresh
# execution of rapidfolio/settings.py, as Django imports it), which keeps the file fast.
CASES = {
    "default": {},
    "https": {"HTTPS": "1"},
    "staged hsts": {"HTTPS": "1", "HSTS_SECONDS": "300"},
    "https behind a proxy": {"HTTPS": "1", "HTTPS_PROXY_HEADER": "X-Forwarded-Proto"},
    "a proxy header without https": {"HTTPS_PROXY_HEADER": "X-Forwarded-Proto"},
}
PROBE = f"""
import json, os, runpy, sys
from django.conf import global_settings
given, read = dict(os.environ), {{}}
for case, env in json.loads(sys.argv[1]).items():
    os.environ.clear()
    os.environ.update(given, **env)
    module = runpy.run_path("rapidfolio/settings.py")
    read[case] = {{name: module.get(name, getattr(global_settings, name)) for name in {NAMES!r}}}
print(json.dumps(read))
"""
PRODUCTION = {
    "SECRET_KEY": "k3y-" + "0123456789abcdefghijklmnopqrstuvwxyz" * 2,
    "ALLOWED_HOSTS": "runs.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://runs.example.com",
    "LEDGER_SIGNING_KEY": base64.b64encode(bytes(range(32))).decode(),
}


def _run(var_dir, args, **env):
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "HTTPS"}
        and not key.startswith(("HTTPS_", "HSTS_", "LEDGER_"))
    }
    clean.update(
        RAPIDFOLIO_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="rapidfolio.settings", **env
    )
    return subprocess.run(
        [sys.executable, *args],
        env=clean,
        cwd=project_settings.BASE_DIR,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict:
    done = _run(tmp_path_factory.mktemp("var"), ["-c", PROBE, json.dumps(CASES)])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def security_issues(var_dir, **env) -> list[str]:
    done = _run(var_dir, ["manage.py", "check", "--deploy"], **PRODUCTION, **env)
    found = re.findall(r"\b((?:security|rapidfolio)\.[WE]\d+)", done.stdout + done.stderr)
    return sorted(set(found))


def apply(settings, probed_case: dict) -> None:
    for name, value in probed_case.items():
        setattr(settings, name, tuple(value) if isinstance(value, list) else value)


# --- what HTTPS=1 sets ----------------------------------------------------------------------
def test_https_turns_on_the_redirect_secure_cookies_and_a_year_of_hsts(probed):
    https = probed["https"]
    assert https["SECURE_SSL_REDIRECT"] is True
    assert https["SESSION_COOKIE_SECURE"] is True and https["CSRF_COOKIE_SECURE"] is True
    assert https["SECURE_HSTS_SECONDS"] == 31_536_000
    assert https["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True and https["SECURE_HSTS_PRELOAD"]
    assert https["SECURE_PROXY_SSL_HEADER"] is None


def test_without_https_the_embedded_default_serves_plain_http(probed):
    default = probed["default"]
    assert default["SECURE_SSL_REDIRECT"] is False and default["SECURE_HSTS_SECONDS"] == 0
    assert default["SESSION_COOKIE_SECURE"] is False and default["CSRF_COOKIE_SECURE"] is False


def test_hsts_max_age_can_be_staged(probed):
    assert probed["staged hsts"]["SECURE_HSTS_SECONDS"] == 300


def test_the_proxy_header_is_trusted_only_when_configured_and_only_with_https(probed):
    assert probed["https behind a proxy"]["SECURE_PROXY_SSL_HEADER"] == [
        "HTTP_X_FORWARDED_PROTO",
        "https",
    ]
    assert probed["a proxy header without https"]["SECURE_PROXY_SSL_HEADER"] is None


def test_check_deploy_has_no_security_warning_with_https(tmp_path):
    assert security_issues(tmp_path, HTTPS="1") == []


def test_the_deploy_checks_name_what_is_missing_without_https(probed, settings, db):
    apply(settings, probed["default"])
    checked = run_checks(include_deployment_checks=True, tags=["security"])
    issues = {message.id for message in checked}
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= issues


# --- what the settings HTTPS=1 reads do to requests -----------------------------------------
@pytest.fixture
def https_settings(probed, settings):
    apply(settings, probed["https"])
    return settings


def test_plain_http_is_redirected_to_https(https_settings, db):
    response = Client().get("/login/?next=/runs/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/login/?next=/runs/"


def test_https_answers_carry_hsts(https_settings, db):
    response = Client().get("/login/", secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_session_and_csrf_cookies_are_sent_only_over_https(https_settings, db):
    make_user("sam")
    client = Client()
    login_page = client.get("/login/", secure=True)
    assert login_page.cookies["csrftoken"]["secure"] is True
    logged_in = client.post(
        "/login/", {"username": "sam", "password": "correct-horse-42"}, secure=True
    )
    assert logged_in.status_code == 302
    assert logged_in.cookies["sessionid"]["secure"] is True
    assert logged_in.cookies["sessionid"]["httponly"] is True


def test_a_client_cannot_claim_https_with_a_forwarded_header_nobody_configured(https_settings, db):
    response = Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 301


def test_a_configured_proxys_forwarded_header_marks_the_request_https(probed, settings, db):
    apply(settings, probed["https behind a proxy"])
    response = Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert "Strict-Transport-Security" in response
