"""Starting, cancelling and retrying runs, and re-enqueueing stuck ones."""

import datetime
import http.server
import threading

import dramatiq
import pytest
from django.db import transaction
from django.utils import timezone

from runs import engine
from runs.errors import CancelNotAllowed, InputValidationError, PermissionDenied, RetryNotAllowed
from runs.models import Run
from runs.services import cancel_run, reap_stuck_runs, retry_run, start_run
from tests.conftest import make_version
from tests.factories import force_status
from tests.test_engine import CREDIT_DEFINITION


class EnqueueRecorder(dramatiq.Middleware):
    """Watches what reaches the real broker, without replacing anything."""

    def __init__(self):
        self.messages = []

    def after_enqueue(self, broker, message, delay):
        self.messages.append(message)


@pytest.fixture
def enqueued():
    broker = dramatiq.get_broker()
    recorder = EnqueueRecorder()
    broker.add_middleware(recorder)
    yield recorder.messages
    broker.middleware.remove(recorder)


@pytest.fixture
def credit_version(db):
    return make_version(CREDIT_DEFINITION, name="Credit and pay")


def _start(version, user=None, customer="cust_anna"):
    return start_run(
        version=version,
        environment="sandbox",
        type="manual" if user else "api",
        user=user,
        inputs={"customer_id": customer, "amount": 1200},
    )


# --- start ----------------------------------------------------------------------------------
def test_inputs_failing_the_schema_list_every_field_and_create_nothing(credit_version):
    with pytest.raises(InputValidationError) as refused:
        start_run(
            version=credit_version,
            environment="sandbox",
            type="api",
            inputs={"amount": 0, "extra": 1},
        )
    fields = {problem["field"] for problem in refused.value.details}
    assert fields == {"customer_id", "amount"}
    assert not Run.objects.exists()


def test_unknown_environment_is_refused(credit_version):
    with pytest.raises(InputValidationError, match="Unknown environment"):
        start_run(
            version=credit_version,
            environment="prod",
            type="api",
            inputs={"customer_id": "c", "amount": 1},
        )


def test_a_user_without_start_permission_cannot_start_a_manual_run(credit_version, reviewer):
    with pytest.raises(PermissionDenied):
        _start(credit_version, reviewer)


def test_a_started_run_is_pending_with_its_creation_event(credit_version, operator):
    run = _start(credit_version, operator)
    assert run.status == "pending"
    assert run.started_by_user == operator
    event = run.events.get()
    assert event.type == "run.created" and event.actor == "user:olivia"


@pytest.mark.django_db(transaction=True)
def test_the_actor_is_enqueued_only_after_the_transaction_commits(enqueued):
    version = make_version(CREDIT_DEFINITION, name="Credit and pay")
    with transaction.atomic():
        run = _start(version)
        assert enqueued == []
    assert [(m.actor_name, m.args) for m in enqueued] == [("execute_run", (run.pk,))]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_enqueued_when_the_transaction_rolls_back(enqueued):
    version = make_version(CREDIT_DEFINITION, name="Credit and pay")
    with pytest.raises(RuntimeError), transaction.atomic():
        _start(version)
        raise RuntimeError("something later in the request failed")
    assert enqueued == []
    assert not Run.objects.exists()


# --- cancel ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["pending", "running", "awaiting_review"])
def test_an_unfinished_run_can_be_cancelled_and_the_event_names_who(
    credit_version, operator, status
):
    run = force_status(_start(credit_version), status)
    cancel_run(run=run, user=operator, reason="Customer called")
    run.refresh_from_db()
    assert run.status == "cancelled"
    event = run.events.order_by("-sequence").first()
    assert event.actor == "user:olivia"
    assert event.data == {"from": status, "to": "cancelled", "reason": "Customer called"}


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_run_cannot_be_cancelled(credit_version, operator, status):
    run = force_status(_start(credit_version), status)
    with pytest.raises(CancelNotAllowed, match=f"is {status}"):
        cancel_run(run=run, user=operator)


def test_a_user_without_cancel_permission_is_refused(credit_version, reviewer):
    with pytest.raises(PermissionDenied):
        cancel_run(run=_start(credit_version), user=reviewer)


def test_a_cancelled_pending_run_never_executes(credit_version, operator):
    run = _start(credit_version)
    cancel_run(run=run, user=operator)
    engine.drive(run.pk)
    assert Run.objects.get(pk=run.pk).steps.count() == 0


class SlowServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def slow_http():
    """A local HTTP endpoint that answers after the test releases it."""
    release = threading.Event()
    arrived = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrived.set()
            release.wait(10)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = SlowServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", arrived, release
    release.set()
    server.shutdown()


def test_a_running_run_stops_before_its_next_node_and_records_the_call_in_flight(
    worker, operator, slow_http
):
    url, arrived, release = slow_http
    definition = {
        "input_schema": {"type": "object"},
        "start": "call",
        "nodes": {
            "call": {
                "type": "tool",
                "tool": "http.request",
                "input": {"method": "'POST'", "url": f"'{url}'", "body": {"a": 1}},
                "next": "second",
            },
            "second": {
                "type": "tool",
                "tool": "http.request",
                "input": {"method": "'POST'", "url": f"'{url}'"},
                "next": "out",
            },
            "out": {"type": "output", "value": None},
        },
    }
    version = make_version(definition, name="Two calls")
    run = start_run(version=version, environment="sandbox", type="api", inputs={})
    assert arrived.wait(10)
    cancel_run(run=run, user=operator)
    release.set()
    worker.drain()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert [(s.node_id, s.status) for s in run.steps.all()] == [("call", "succeeded")]


# --- retry ----------------------------------------------------------------------------------
def test_a_transient_failure_is_retried_as_a_new_run_leaving_the_original_untouched(
    credit_version, operator
):
    original = force_status(_start(credit_version), "failed")
    events_before = list(original.events.values_list("hash", flat=True))
    retry = retry_run(run=original, user=operator)
    original.refresh_from_db()
    assert retry.pk != original.pk
    assert retry.retry_of == original
    assert retry.inputs == original.inputs and retry.version == original.version
    assert retry.environment == original.environment
    assert retry.status == "pending"
    assert original.status == "failed"
    hashes = list(original.events.values_list("hash", flat=True))
    assert hashes[: len(events_before)] == events_before
    assert original.events.order_by("-sequence").first().data == {"retry": retry.public_id}


@pytest.mark.parametrize("kind", ["permanent", "rejected"])
def test_a_non_transient_failure_cannot_be_retried(credit_version, operator, kind):
    run = _start(credit_version)
    if kind == "rejected":
        force_status(run, "awaiting_review")
        from runs import writer

        writer.transition(run, "failed", actor="x", failure_kind="rejected", reason="no")
    else:
        force_status(run, "failed", failure_kind=kind)
    with pytest.raises(RetryNotAllowed, match=f"failed with kind {kind}"):
        retry_run(run=run, user=operator)
    assert not Run.objects.filter(retry_of=run).exists()


@pytest.mark.parametrize(
    "status", ["pending", "running", "awaiting_review", "completed", "cancelled"]
)
def test_a_run_that_did_not_fail_cannot_be_retried(credit_version, operator, status):
    run = force_status(_start(credit_version), status)
    with pytest.raises(RetryNotAllowed, match="only failed runs can be retried"):
        retry_run(run=run, user=operator)


def test_a_run_is_retried_at_most_once(credit_version, operator):
    original = force_status(_start(credit_version), "failed")
    first = retry_run(run=original, user=operator)
    with pytest.raises(RetryNotAllowed, match=f"already retried as {first.public_id}"):
        retry_run(run=original, user=operator)


# --- reaper ---------------------------------------------------------------------------------
def test_the_reaper_re_enqueues_only_runs_whose_lease_ran_out(credit_version, enqueued):
    stuck = _start(credit_version)
    fresh = _start(credit_version)
    done = force_status(_start(credit_version), "completed")
    later = timezone.now() + datetime.timedelta(hours=1)
    Run.objects.filter(pk=fresh.pk).update(lease_expires_at=later + datetime.timedelta(hours=1))
    reaped = reap_stuck_runs(now=later)
    assert reaped == [stuck.pk]
    assert done.pk not in reaped
    assert [m.args for m in enqueued] == [(stuck.pk,)]


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_message_was_lost_is_completed_after_reaping():
    from rapidfolio.broker import start_worker
    from tests.conftest import WorkerHandle

    version = make_version(CREDIT_DEFINITION, name="Credit and pay")
    run = _start(version)
    dramatiq.get_broker().flush_all()  # the message is lost (a broker restart, say)
    handle = WorkerHandle(start_worker(threads=1))
    try:
        handle.drain()
        assert Run.objects.get(pk=run.pk).status == "pending"
        assert reap_stuck_runs(now=timezone.now() + datetime.timedelta(hours=1)) == [run.pk]
        handle.drain()
    finally:
        handle.worker.stop()
    assert Run.objects.get(pk=run.pk).status == "completed"
