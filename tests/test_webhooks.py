"""Outbound webhooks: signed deliveries to a real local HTTP server, retried with backoff, every
attempt recorded on the run."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction

from runs import webhooks
from runs.integrity import verify_run
from runs.models import RunType, WebhookEndpoint
from runs.services import cancel_run, start_run
from tests.factories import force_status

SECRET = "whsec_rapidfolio_receiver"


class Receiver:
    """A webhook receiver on 127.0.0.1 answering with the given statuses in turn (then 200)."""

    def __init__(self, statuses=(), delay_seconds=0.0):
        self.statuses = list(statuses)
        self.delay_seconds = delay_seconds
        self.requests = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(f"answered {status}".encode())
                receiver.arrived.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rapidfolio"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*statuses, delay_seconds=0.0):
        made.append(Receiver(statuses, delay_seconds))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0


def endpoint(url, events=("run.completed",), environment="sandbox", enabled=True):
    hook = WebhookEndpoint(url=url, environment=environment, events=list(events), enabled=enabled)
    hook.set_secret(SECRET)
    hook.save()
    return hook


def start(version, environment="sandbox", amount=5):
    return start_run(
        version=version,
        environment=environment,
        inputs={"amount": amount, "currency": "usd"},
        type=RunType.API,
    )


def deliveries(run):
    return [e.data for e in run.events.filter(type="webhook.delivery").order_by("sequence")]


def test_completed_run_is_delivered_signed_to_its_endpoint(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url)
    run = start(simple_version, amount=2500)
    worker.drain()
    [request] = server.requests
    header = request["headers"]["Rapidfolio-Signature"]
    assert webhooks.verify_signature(request["body"], header, SECRET, tolerance=300)
    body = json.loads(request["body"])
    assert body["type"] == "run.completed"
    assert body["id"].startswith("whd_")
    assert request["headers"]["Rapidfolio-Delivery"] == body["id"]
    assert body["data"]["run"]["id"] == run.public_id
    assert body["data"]["run"]["status"] == "completed"
    assert body["data"]["run"]["version"] == 1
    assert body["data"]["run"]["environment"] == "sandbox"
    assert body["data"]["run"]["procedure"]["name"] == "Classify payment"
    assert body["data"]["run"]["output"] == {"size": "big", "amount": 2500}


def test_every_attempt_is_an_event_on_the_run(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url)
    run = start(simple_version)
    worker.drain()
    [attempt] = deliveries(run)
    assert attempt["attempt"] == 1
    assert attempt["ok"] is True
    assert attempt["status_code"] == 200
    assert attempt["response"] == "answered 200"
    assert attempt["duration_ms"] >= 0
    assert attempt["endpoint"] == server.url


def test_delivery_failing_twice_then_succeeding_is_retried(simple_version, worker, receiver):
    server = receiver(500, 503)
    endpoint(server.url)
    run = start(simple_version)
    worker.drain()
    assert len(server.requests) == 3
    assert len({json.loads(r["body"])["id"] for r in server.requests}) == 1
    attempts = deliveries(run)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 503, 200]
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert [a.get("next_attempt_in_seconds") for a in attempts] == [0.05, 0.1, None]


def test_delivery_gives_up_after_the_last_attempt(simple_version, worker, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    server = receiver(500, 500, 500)
    endpoint(server.url)
    run = start(simple_version)
    worker.drain()
    assert len(server.requests) == 2
    assert [a["ok"] for a in deliveries(run)] == [False, False]


def test_unreachable_endpoint_records_the_error(simple_version, worker, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    endpoint("http://127.0.0.1:9/closed")
    run = start(simple_version)
    worker.drain()
    [attempt] = deliveries(run)
    assert attempt["ok"] is False
    assert attempt["status_code"] is None
    assert "ConnectError" in attempt["error"]


def test_slow_endpoint_times_out_and_is_retried(simple_version, worker, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    slow = receiver(delay_seconds=0.5)
    endpoint(slow.url)
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    run = start(simple_version)
    worker.drain()
    attempts = deliveries(run)
    assert [a["error"].split(":")[0] for a in attempts] == ["ReadTimeout", "ReadTimeout"]


def test_response_snippet_is_at_most_500_characters(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url)
    run = start(simple_version)
    worker.drain()
    assert len(deliveries(run)[0]["response"]) <= 500


def test_failed_run_delivery_carries_the_failure(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url, events=["run.failed"])
    with transaction.atomic():  # the worker's message leaves only once the run has failed
        run = force_status(start(simple_version), "failed")
    worker.drain()
    body = json.loads(server.requests[0]["body"])
    assert body["type"] == "run.failed"
    assert body["data"]["run"]["failure"] == {
        "reason": "Bank timed out",
        "kind": "transient",
        "step": None,
    }
    assert "output" not in body["data"]["run"]
    assert run.public_id == body["data"]["run"]["id"]


def test_cancelled_run_is_delivered_as_run_cancelled(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url, events=["run.cancelled"])
    with transaction.atomic():  # cancelled before the worker can pick it up
        run = start(simple_version)
        cancel_run(run=run)
    worker.drain()
    assert [json.loads(r["body"])["type"] for r in server.requests] == ["run.cancelled"]


def test_run_awaiting_review_is_delivered(worker, receiver):
    from tests.conftest import make_version
    from tests.test_api import REVIEW_DEFINITION

    server = receiver()
    endpoint(server.url, events=["run.awaiting_review"])
    version = make_version(REVIEW_DEFINITION, "Pay with review")
    start_run(version=version, environment="sandbox", inputs={"amount": 7}, type=RunType.API)
    worker.drain()
    assert [json.loads(r["body"])["type"] for r in server.requests] == ["run.awaiting_review"]


def test_endpoint_gets_only_the_events_it_subscribed_to(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url, events=["run.failed"])
    start(simple_version)
    worker.drain()
    assert server.requests == []


def test_endpoint_of_the_other_environment_gets_nothing(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url, environment="live")
    start(simple_version)
    worker.drain()
    assert server.requests == []


def test_disabled_endpoint_gets_nothing(simple_version, worker, receiver):
    server = receiver()
    endpoint(server.url, enabled=False)
    start(simple_version)
    worker.drain()
    assert server.requests == []


def test_each_subscribed_endpoint_gets_its_own_delivery(simple_version, worker, receiver):
    first, second = receiver(), receiver()
    endpoint(first.url)
    endpoint(second.url)
    start(simple_version)
    worker.drain()
    first_id = json.loads(first.requests[0]["body"])["id"]
    second_id = json.loads(second.requests[0]["body"])["id"]
    assert first_id != second_id


def test_delivery_events_keep_the_run_chain_intact(simple_version, worker, receiver):
    server = receiver(500)
    endpoint(server.url)
    run = start(simple_version)
    worker.drain()
    run.refresh_from_db()
    assert verify_run(run).intact


# --- verifying as a receiver ----------------------------------------------------------------
def test_signature_verifies_for_the_exact_body():
    body = '{"id":"whd_1"}'
    assert webhooks.verify_signature(body, webhooks.sign(body, SECRET), SECRET)


def test_signature_fails_for_a_changed_body():
    header = webhooks.sign('{"id":"whd_1"}', SECRET)
    assert not webhooks.verify_signature('{"id":"whd_2"}', header, SECRET)


def test_signature_fails_with_another_secret():
    body = '{"id":"whd_1"}'
    assert not webhooks.verify_signature(body, webhooks.sign(body, SECRET), "other")


def test_signature_older_than_the_tolerance_fails():
    body = '{"id":"whd_1"}'
    header = webhooks.sign(body, SECRET, timestamp=int(time.time()) - 301)
    assert not webhooks.verify_signature(body, header, SECRET, tolerance=300)


def test_malformed_signature_header_fails():
    assert not webhooks.verify_signature("{}", "v1=abc", SECRET)
    assert not webhooks.verify_signature("{}", "t=soon,v1=abc", SECRET)
    assert not webhooks.verify_signature("{}", None, SECRET)
    assert not webhooks.verify_signature("{}", f"t={int(time.time())},v1=é", SECRET)
