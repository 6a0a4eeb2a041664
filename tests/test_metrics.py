"""/metrics: Prometheus text, `rapidfolio_` names, for loopback clients or the metrics token.
The numbers move when the product does: a run driven by the engine, a tool call, a request,
the reaper, a webhook attempt; and only once the transaction that made it true commits."""

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
from django.db import transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from rapidfolio.test_client import Client
from runs import engine, webhooks, writer
from runs.health import beat_scheduler
from runs.models import RunStatus
from runs.services import cancel_run, reap_stuck_runs, start_run
from tests.conftest import make_version
from tests.factories import force_status
from tests.test_engine import CREDIT_DEFINITION
from tests.test_webhooks import Receiver, endpoint

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token-for-tests"
FAMILIES = {
    "rapidfolio_runs_started",
    "rapidfolio_runs_finished",
    "rapidfolio_step_duration_seconds",
    "rapidfolio_tool_call_duration_seconds",
    "rapidfolio_tool_errors",
    "rapidfolio_runs_awaiting_review",
    "rapidfolio_oldest_awaiting_review_age_seconds",
    "rapidfolio_queue_messages",
    "rapidfolio_queue_oldest_message_age_seconds",
    "rapidfolio_reaper_reenqueued_runs",
    "rapidfolio_webhook_deliveries",
    "rapidfolio_http_request_duration_seconds",
    "rapidfolio_http_requests",
    "rapidfolio_procedure_info",
    "rapidfolio_ledger_unsealed_events",
    "rapidfolio_ledger_oldest_unsealed_age_seconds",
    "rapidfolio_metrics_collector_up",
}


class Scrape:
    """One scrape of /metrics from loopback, parsed."""

    def __init__(self):
        response = Client().get("/metrics")
        assert response.status_code == 200, response.content
        self.families = list(text_string_to_metric_families(response.content.decode()))
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families
            for sample in family.samples
        }

    def value(self, metric: str, /, **labels) -> float:
        return self.samples.get((metric, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {family.name for family in self.families}


def sandbox_run(version, **inputs):
    return start_run(version=version, environment="sandbox", inputs=inputs, type="api")


@pytest.fixture
def credit_version(db):
    return make_version(CREDIT_DEFINITION, name="Credit and pay")


# --- who may read them ----------------------------------------------------------------------
def test_loopback_clients_read_prometheus_text_with_rapidfolio_names(db):
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    scrape = Scrape()
    assert scrape.names() >= FAMILIES
    assert scrape.value("rapidfolio_metrics_collector_up", collector="database") == 1
    assert scrape.value("rapidfolio_metrics_collector_up", collector="queues") == 1


def test_ipv6_loopback_is_a_loopback_client(db):
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200


def test_another_address_without_a_configured_token_is_refused(db, settings):
    settings.METRICS_TOKEN = ""
    response = Client(REMOTE_ADDR="203.0.113.7").get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert b"rapidfolio_" not in response.content


def test_another_address_needs_the_metrics_token(db, settings):
    settings.METRICS_TOKEN = TOKEN
    remote = Client(REMOTE_ADDR="203.0.113.7")
    missing = remote.get("/metrics")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    wrong = remote.get("/metrics", headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 401
    right = remote.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert b"rapidfolio_runs_started_total" in right.content


def test_a_request_forwarded_by_a_proxy_on_loopback_is_not_a_local_scrape(db, settings):
    settings.METRICS_TOKEN = ""
    proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.4")
    assert proxied.get("/metrics").status_code == 403


# --- the numbers move ----------------------------------------------------------------------
def test_a_run_driven_to_completion_moves_the_run_counters(simple_version, transactional_db):
    labels = {
        "procedure": simple_version.procedure.public_id,
        "environment": "sandbox",
        "type": "api",
    }
    before = Scrape()
    run = sandbox_run(simple_version, amount=5000, currency="usd")
    engine.drive(run.pk)
    after = Scrape()
    started = "rapidfolio_runs_started_total"
    finished = "rapidfolio_runs_finished_total"
    assert after.value(started, **labels) == before.value(started, **labels) + 1
    done = {**labels, "outcome": "completed", "failure_kind": ""}
    assert after.value(finished, **done) == before.value(finished, **done) + 1
    # The condition node and the output node: one step each.
    steps = "rapidfolio_step_duration_seconds_count"
    for node_type in ("condition", "output"):
        assert (
            after.value(steps, node_type=node_type) == before.value(steps, node_type=node_type) + 1
        )
    info = after.value(
        "rapidfolio_procedure_info", procedure=labels["procedure"], name="Classify payment"
    )
    assert info == 1


def test_a_tool_call_adds_to_its_latency_histogram(credit_version, transactional_db):
    latency = "rapidfolio_tool_call_duration_seconds_count"
    credit = {"tool": "credit.check", "environment": "sandbox", "outcome": "ok"}
    pay = {"tool": "stripe.create_payment_intent", "environment": "sandbox", "outcome": "ok"}
    before = Scrape()
    run = sandbox_run(credit_version, customer_id="cust_anna", amount=1200)
    engine.drive(run.pk)
    after = Scrape()
    assert after.value(latency, **credit) == before.value(latency, **credit) + 1
    assert after.value(latency, **pay) == before.value(latency, **pay) + 1
    buckets = [
        value
        for (name, labels), value in after.samples.items()
        if name == "rapidfolio_tool_call_duration_seconds_bucket"
        and ("tool", "credit.check") in labels
        and ("outcome", "ok") in labels
    ]
    assert max(buckets) == after.value(latency, **credit)  # +Inf holds every call


def test_a_failing_tool_call_counts_an_error_of_its_kind_and_a_failed_run(
    credit_version, transactional_db
):
    errors = {"tool": "credit.check", "kind": "permanent"}
    failed = {
        "procedure": credit_version.procedure.public_id,
        "environment": "sandbox",
        "type": "api",
        "outcome": "failed",
        "failure_kind": "permanent",
    }
    latency = {"tool": "credit.check", "environment": "sandbox", "outcome": "permanent"}
    before = Scrape()
    run = sandbox_run(credit_version, customer_id="cust_blocked", amount=1200)
    engine.drive(run.pk)
    after = Scrape()
    assert after.value("rapidfolio_tool_errors_total", **errors) == (
        before.value("rapidfolio_tool_errors_total", **errors) + 1
    )
    assert after.value("rapidfolio_runs_finished_total", **failed) == (
        before.value("rapidfolio_runs_finished_total", **failed) + 1
    )
    count = "rapidfolio_tool_call_duration_seconds_count"
    assert after.value(count, **latency) == before.value(count, **latency) + 1


def test_a_transition_rolled_back_counts_nothing(simple_version, transactional_db):
    run = sandbox_run(simple_version, amount=5, currency="usd")
    cancelled = {
        "procedure": simple_version.procedure.public_id,
        "environment": "sandbox",
        "type": "api",
        "outcome": "cancelled",
        "failure_kind": "",
    }
    before = Scrape().value("rapidfolio_runs_finished_total", **cancelled)
    with pytest.raises(RuntimeError), transaction.atomic():
        writer.transition(run, RunStatus.CANCELLED, actor="system:test", reason="then undone")
        raise RuntimeError("the caller's transaction fails after the transition")
    assert Scrape().value("rapidfolio_runs_finished_total", **cancelled) == before
    run.refresh_from_db()
    cancel_run(run=run, reason="for real")
    assert Scrape().value("rapidfolio_runs_finished_total", **cancelled) == before + 1


def test_http_latency_is_labelled_by_route_name_never_by_path(finished_run, operator):
    browser = Client()
    browser.force_login(operator)
    before = Scrape()
    assert browser.get(f"/runs/{finished_run.public_id}/").status_code == 200
    assert browser.get("/no-such-page/").status_code == 404
    after = Scrape()
    count = "rapidfolio_http_request_duration_seconds_count"
    detail = {"route": "runs:detail", "method": "GET"}
    assert after.value(count, **detail) == before.value(count, **detail) + 1
    requests = "rapidfolio_http_requests_total"
    missing = {"route": "unmatched", "method": "GET", "status": "404"}
    assert after.value(requests, **missing) == before.value(requests, **missing) + 1
    routes = {dict(labels).get("route", "") for _, labels in after.samples}
    assert not any(finished_run.public_id in route or "/" in route for route in routes)


def test_runs_awaiting_review_and_the_age_of_the_oldest(simple_version, monkeypatch):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    with monkeypatch.context() as travel:
        travel.setattr(timezone, "now", lambda: an_hour_ago)
        force_status(sandbox_run(simple_version, amount=5, currency="usd"), "awaiting_review")
    force_status(sandbox_run(simple_version, amount=6, currency="usd"), "awaiting_review")
    scrape = Scrape()
    assert scrape.value("rapidfolio_runs_awaiting_review", environment="sandbox") == 2
    assert scrape.value("rapidfolio_runs_awaiting_review", environment="live") == 0
    age = scrape.value("rapidfolio_oldest_awaiting_review_age_seconds", environment="sandbox")
    assert 3600 <= age < 3660


def test_queue_depth_and_the_age_of_the_oldest_message(simple_version, transactional_db):
    broker = dramatiq.get_broker()
    broker.flush_all()
    try:
        sandbox_run(simple_version, amount=5, currency="usd")  # sent on commit; no worker runs
        scrape = Scrape()
        assert scrape.value("rapidfolio_queue_messages", queue="runs", state="ready") == 1
        assert scrape.value("rapidfolio_queue_messages", queue="webhooks", state="ready") == 0
        age = scrape.value("rapidfolio_queue_oldest_message_age_seconds", queue="runs")
        assert 0 <= age < 30
    finally:
        broker.flush_all()


def test_the_reapers_re_enqueues_are_counted(simple_version, transactional_db, settings):
    run = sandbox_run(simple_version, amount=5, currency="usd")
    before = Scrape().value("rapidfolio_reaper_reenqueued_runs_total")
    later = timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS + 1)
    assert reap_stuck_runs(now=later) == [run.pk]
    assert Scrape().value("rapidfolio_reaper_reenqueued_runs_total") == before + 1
    dramatiq.get_broker().flush_all()


def test_webhook_deliveries_are_counted_by_outcome(finished_run, transactional_db, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver = Receiver(statuses=(500, 200, 500))
    hook = endpoint(receiver.url)
    off = endpoint(receiver.url, enabled=False)
    before = Scrape()
    try:
        for attempt, target in ((1, hook), (2, hook), (2, hook), (1, off)):
            webhooks.deliver(
                endpoint_id=target.pk,
                run_id=finished_run.pk,
                delivery_id="whd_test",
                event_type="run.completed",
                body="{}",
                attempt=attempt,
            )
    finally:
        receiver.close()
        dramatiq.get_broker().flush_all()
    after = Scrape()
    for outcome in ("retrying", "delivered", "failed", "skipped"):
        name = "rapidfolio_webhook_deliveries_total"
        assert after.value(name, outcome=outcome) == before.value(name, outcome=outcome) + 1


# --- several processes ---------------------------------------------------------------------
# What a gunicorn worker or a `rundramatiq` process does: count, in its own process. (The HTTP
# metrics: their module loads without the apps, which keeps the subprocesses quick.)
COUNT_IN_A_PROCESS = """
import sys
from prometheus_client import generate_latest
from rapidfolio.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS, process_registry
HTTP_REQUESTS.labels("runs:detail", "GET", "200").inc(int(sys.argv[1]))
HTTP_REQUEST_DURATION.labels("runs:detail", "GET").observe(0.2)
if sys.argv[2] == "print":
    sys.stdout.write(generate_latest(process_registry()).decode())
"""


def test_in_multiprocess_mode_a_scrape_adds_up_every_process(tmp_path):
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "rapidfolio.settings",
    }

    def process(count: int, then: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", COUNT_IN_A_PROCESS, str(count), then],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    process(2, "exit")  # a process that has since exited still counts
    text = process(3, "print")
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    detail = {"route": "runs:detail", "method": "GET"}
    requests = frozenset({**detail, "status": "200"}.items())
    assert samples[("rapidfolio_http_requests_total", requests)] == 5
    assert (
        samples[("rapidfolio_http_request_duration_seconds_count", frozenset(detail.items()))] == 2
    )


# --- the dashboard -------------------------------------------------------------------------
def test_the_grafana_dashboard_charts_only_metrics_we_export(db):
    dashboard = json.loads((ROOT / "docs/grafana/rapidfolio.json").read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(expressions) >= 12
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for expr in expressions
        for name in re.findall(r"rapidfolio_[a-z_]+", expr)
    }
    beat_scheduler(interval_seconds=10)  # its age is exported once a scheduler has beaten
    assert used <= Scrape().names()
    assert FAMILIES | {"rapidfolio_scheduler_heartbeat_age_seconds"} <= used
