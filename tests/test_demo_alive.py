"""The demo stays alive (issue 15).

`make run`'s own steps (`manage.py migrate`, `seed_demo`, `serve`) run here in subprocesses on
a database of their own: a SQLite file in a temporary RAPIDFOLIO_VAR_DIR, or on the PostgreSQL
run a fresh database beside the test one; always with the embedded broker, as `make run` has
it. What the seed left pending or running must finish within a minute of `serve` starting
(not after a lease); the rest is read through the API with the seeded key, and in the demo's
database.

The demo's cron trigger is checked with a fixed clock (waiting for a real minute would double
this file's time), and the receiver, the base URL rule and the re-send at start in-process.
"""

import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import dramatiq
import psycopg
import pytest
import yaml
from django.conf import settings
from django.contrib.auth.models import User
from django.test import RequestFactory

from procedures.demo import DEMO_DIR
from procedures.models import Connection, Trigger
from rapidfolio import public_url
from rapidfolio.management import demo as demo_parts
from runs import engine, outbox
from runs.models import ApiKey, Run, RunStatus, RunType, WebhookEndpoint
from runs.services import start_run
from runs.triggers.cron import fire_due_cron_triggers
from runs.webhooks import sign
from tests.conftest import make_version

BASE_DIR = settings.BASE_DIR
SERVED_WITHIN_SECONDS = 60  # the bound, from the banner
STARTUP_SECONDS = 240  # migrate, seed and start on a loaded machine
TERMINAL = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
# The test process's settings that are not `make run`'s: the demo is embedded, in its own dir.
NOT_THE_DEMO_S = (
    "DATABASE_URL",
    "REDIS_URL",
    "RAPIDFOLIO_REQUIRE_SERVICES",
    "PUBLIC_BASE_URL",
    "ALLOWED_HOSTS",
    "LEDGER_CHECKPOINT_DIR",
    "PYTEST_XDIST_WORKER",
)


@dataclass
class Demo:
    port: int
    banner: str
    api_key: str
    seeded_active: dict[str, str]  # public id -> status, as the seed left them
    served_at: float  # time.monotonic() when the banner was printed
    query: object  # SQL text -> rows, in the demo's database

    def get(self, path: str) -> dict:
        status, body = self.request("GET", path)
        assert status == 200, body
        return body

    def request(self, method: str, path: str) -> tuple[int, dict]:
        with closing(http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)) as http_:
            http_.request(method, path, headers={"Authorization": f"Bearer {self.api_key}"})
            response = http_.getresponse()
            return response.status, json.loads(response.read() or b"null")

    def wait_for(self, predicate, *, until: float):
        """Poll `predicate` until it answers something true or `until` (monotonic) passes;
        returns its last answer."""
        while True:
            answer = predicate()
            if answer or time.monotonic() > until:
                return answer
            time.sleep(0.5)


# --- the demo, as `make run` starts it --------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("demo-var")
    with _demo_database(var_dir) as (database_url, query):
        env = {k: v for k, v in os.environ.items() if k not in NOT_THE_DEMO_S}
        env |= {"RAPIDFOLIO_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "rapidfolio.settings"}
        if database_url:
            env["DATABASE_URL"] = database_url
        port = _free_port()
        _manage(env, "migrate", "--noinput", "--verbosity", "0")
        _manage(env, "seed_demo", "--port", str(port))
        active = query(
            f"SELECT public_id, status FROM {Run._meta.db_table}"
            " WHERE status IN ('pending', 'running')"
        )
        out, err = var_dir / "serve.out", var_dir / "serve.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(port)],
                cwd=BASE_DIR,
                env=env,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            banner = _banner(process, out, err)
            yield Demo(
                port=port,
                banner=banner,
                api_key=(var_dir / demo_parts.API_KEY_FILE).read_text().strip(),
                seeded_active=dict(active),
                served_at=time.monotonic(),
                query=query,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def _demo_database(var_dir):
    """(DATABASE_URL for the demo's processes, a query function): the SQLite file the embedded
    default makes in its var dir, or a fresh PostgreSQL database, dropped afterwards."""
    if not settings.DATABASE_IS_POSTGRES:
        path = var_dir / "rapidfolio.sqlite3"

        def sqlite_query(sql):
            with closing(sqlite3.connect(path)) as database:
                return database.execute(sql).fetchall()

        yield None, sqlite_query
        return
    db = settings.DATABASES["default"]
    name = f"rf_demo_alive_{os.getpid()}"
    user = quote(db["USER"], safe="") + (
        ":" + quote(db["PASSWORD"], safe="") if db.get("PASSWORD") else ""
    )
    server = f"postgresql://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')

    def postgres_query(sql):
        with psycopg.connect(f"{server}/{name}") as database:
            return database.execute(sql).fetchall()

    try:
        yield f"{server}/{name}", postgres_query
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _manage(env, *args) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _banner(process, out, err) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while "Ctrl+C to stop." not in out.read_text():
        assert process.poll() is None, out.read_text() + err.read_text()
        assert time.monotonic() < deadline, out.read_text() + err.read_text()
        time.sleep(0.2)
    return out.read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _statuses(demo, run_ids) -> dict[str, str]:
    return {run_id: demo.get(f"/v1/runs/{run_id}")["status"] for run_id in run_ids}


# --- what moves by itself ---------------------------------------------------------------------
def test_the_seeded_pending_and_running_runs_complete_within_a_minute_of_serving(demo):
    assert sorted(demo.seeded_active.values()) == ["pending", "running"]

    def finished():
        statuses = _statuses(demo, demo.seeded_active)
        return statuses if set(statuses.values()) <= TERMINAL else None

    statuses = demo.wait_for(finished, until=demo.served_at + SERVED_WITHIN_SECONDS)
    assert statuses == {run_id: "completed" for run_id in demo.seeded_active}


def test_the_transient_failure_left_for_the_operator_succeeds_when_retried(demo):
    failed = demo.get("/v1/runs?status=failed&limit=100")["runs"]
    transient = [demo.get(f"/v1/runs/{run['id']}") for run in failed]
    [original] = [
        run for run in transient if run["failure"]["kind"] == "transient" and not run["retries"]
    ]
    status, retry = demo.request("POST", f"/v1/runs/{original['id']}/retry")
    assert status == 202, retry

    def finished():
        run = demo.get(f"/v1/runs/{retry['id']}")
        return run if run["status"] in TERMINAL else None

    run = demo.wait_for(finished, until=time.monotonic() + SERVED_WITHIN_SECONDS)
    assert run["status"] == "completed", run
    assert run["retry_of"] == original["id"]
    assert run["output"]["approved"] is True


def test_the_runs_that_finish_once_served_are_delivered_to_the_demo_receiver(demo):
    receiver = f"http://127.0.0.1:{demo.port}/hooks/demo-receiver/"

    def deliveries():
        events = [
            event
            for run_id in demo.seeded_active
            for event in demo.get(f"/v1/runs/{run_id}")["events"]
            if event["type"] == "webhook.delivery"
        ]
        return events if len(events) == len(demo.seeded_active) else None

    events = demo.wait_for(deliveries, until=demo.served_at + SERVED_WITHIN_SECONDS + 10)
    assert events, "no webhook delivery recorded"
    for event in events:
        assert event["data"]["endpoint"] == receiver
        assert (event["data"]["ok"], event["data"]["status_code"]) == (True, 204)
        assert event["data"]["attempt"] == 1


# --- what `make run` shows and answers --------------------------------------------------------
def test_the_banner_lists_every_login_the_seed_created(demo):
    usernames = [
        username for (username,) in demo.query(f"SELECT username FROM {User._meta.db_table}")
    ]
    assert sorted(usernames) == sorted(demo_parts.DEMO_LOGINS)
    for username in usernames:
        assert re.search(rf"^\s+{username}\s", demo.banner, re.MULTILINE), demo.banner
    assert f"password {demo_parts.DEMO_PASSWORD}" in demo.banner
    [(prefix,)] = demo.query(f"SELECT prefix FROM {ApiKey._meta.db_table} WHERE revoked_at IS NULL")
    assert demo.api_key.startswith(prefix)
    assert f"API key (sandbox): {demo.api_key}" in demo.banner
    assert f"serving on http://127.0.0.1:{demo.port}/" in demo.banner


def test_api_answers_carry_the_base_url_of_the_port_served(demo):
    base = f"http://127.0.0.1:{demo.port}"
    [summary] = demo.get("/v1/runs?limit=1")["runs"]
    assert summary["url"] == f"{base}/v1/runs/{summary['id']}"
    run = demo.get(f"/v1/runs/{summary['id']}")
    assert (run["url"], run["dashboard_url"]) == (
        f"{base}/v1/runs/{run['id']}",
        f"{base}/runs/{run['id']}/",
    )


def test_the_seed_leaves_one_webhook_endpoint_one_sandbox_connection_and_a_cron_trigger(demo):
    endpoints = demo.query(
        f"SELECT url, environment, enabled FROM {WebhookEndpoint._meta.db_table}"
    )
    assert [(url, environment, bool(enabled)) for url, environment, enabled in endpoints] == [
        (f"http://127.0.0.1:{demo.port}/hooks/demo-receiver/", "sandbox", True)
    ]
    # Only the http one: the bureau that was down for the transient failures is gone.
    connections = demo.query(f"SELECT integration, environment FROM {Connection._meta.db_table}")
    assert connections == [("http", "sandbox")]
    triggers = demo.query(
        f"SELECT kind, environment, cron_expression FROM {Trigger._meta.db_table}"
    )
    assert triggers == [("cron", "sandbox", "* * * * *")]


# --- the same rules, in-process ---------------------------------------------------------------
def demo_version(name: str):
    document = yaml.safe_load((DEMO_DIR / f"{name}.yaml").read_text())
    return make_version(document["definition"], name=document["name"])


def test_the_demo_cron_trigger_starts_a_sandbox_credit_review_every_minute(db):
    trigger = demo_parts.ensure_cron_trigger(demo_version("credit_check").procedure)
    first_minute = trigger.created_at.replace(second=0, microsecond=0) + timedelta(minutes=1)

    [first] = fire_due_cron_triggers(now=first_minute + timedelta(seconds=5))
    assert fire_due_cron_triggers(now=first_minute + timedelta(seconds=15)) == []
    [second] = fire_due_cron_triggers(now=first_minute + timedelta(minutes=1, seconds=5))

    for receipt in (first, second):
        run = receipt.run
        assert (run.environment, run.type) == ("sandbox", RunType.TRIGGER)
        engine.drive(run.pk)
        run.refresh_from_db()
        assert run.status == RunStatus.COMPLETED, run.failure_reason
        assert run.output["approved"] is True


def test_the_demo_receiver_answers_204_only_to_a_delivery_signed_by_its_endpoint(db, client):
    endpoint = demo_parts.ensure_webhook_endpoint("http://testserver")
    body = '{"id":"whd_test","type":"run.completed"}'
    path = "/hooks/demo-receiver/"

    def post(signature):
        headers = {"Rapidfolio-Signature": signature} if signature else {}
        return client.post(path, body, content_type="application/json", headers=headers)

    assert post(sign(body, endpoint.get_secret())).status_code == 204
    assert post(sign(body, "another secret")).status_code == 401
    assert post(None).status_code == 401
    assert (
        post(sign(body, endpoint.get_secret(), timestamp=int(time.time()) - 3600)).status_code
        == 401
    )
    assert client.get(path).status_code == 405


def test_absolute_urls_use_public_base_url_when_set_else_the_request_s_address(settings):
    request = RequestFactory().get("/v1/runs", HTTP_HOST="127.0.0.1:8400")
    settings.PUBLIC_BASE_URL = ""
    assert public_url.base_url(request) == "http://127.0.0.1:8400"
    settings.PUBLIC_BASE_URL = "https://runs.example.com"
    assert public_url.base_url(request) == "https://runs.example.com"


def test_a_server_listening_on_every_address_is_reached_at_the_loopback_one():
    assert public_url.local_base_url("0.0.0.0", 8400) == "http://127.0.0.1:8400"
    assert public_url.local_base_url("::", 8400) == "http://127.0.0.1:8400"
    assert public_url.local_base_url("::1", 8400) == "http://[::1]:8400"
    assert public_url.local_base_url("localhost", 8000) == "http://localhost:8000"


def test_serving_again_sends_every_pending_run_whose_message_was_lost(worker, simple_version):
    worker.worker.pause()
    run = start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type=RunType.API,
    )
    dramatiq.get_broker().flush_all()  # what a previous process's in-memory broker held
    worker.worker.resume()

    assert outbox.resend_active_runs() == [run.pk]
    worker.drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
