"""The outbox: with the broker down, a committed run is answered as created and is executed once
the broker is back, within seconds; stuck runs are sent again once per backoff step, not once
per tick.

The broker is down for real: a RedisBroker at redis://127.0.0.1:1/0, where nothing listens,
takes the configured broker's place (dramatiq's global broker, and the `broker` of each of our
actors, which Dramatiq binds when it declares them) for the outage, and the configured broker
is put back when it ends. Every send then fails as it does in production when Redis is gone
(redis.exceptions.ConnectionError: connection refused), on both runs of the suite: on SQLite
the broker that comes back is the embedded StubBroker (in the process, it cannot go down
itself), on PostgreSQL the configured Redis. Nothing of ours is replaced.
"""

import datetime
import json
import logging
import threading
import time

import dramatiq
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from rapidfolio import scheduler
from reviews.models import ReviewRequest
from reviews.services import approve
from runs import dispatch, engine, outbox, webhooks
from runs.api_keys import create_api_key
from runs.models import OutboxMessage, Run, RunEvent
from runs.services import reap_stuck_runs, start_run
from tests.conftest import SIMPLE_DEFINITION, make_version
from tests.test_api import REVIEW_DEFINITION
from tests.test_webhooks import SECRET, Receiver, endpoint

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_URL = "redis://127.0.0.1:1/0"
INPUTS = {"amount": 10, "currency": "usd"}


class Sends(dramatiq.Middleware):
    """Counts the messages a broker is asked to enqueue (before it tries) and those it took."""

    def __init__(self):
        self.tried = []
        self.taken = []

    def before_enqueue(self, broker, message, delay):
        self.tried.append(message)

    def after_enqueue(self, broker, message, delay):
        self.taken.append(message)


class BrokerOutage:
    def __init__(self):
        self.configured = dramatiq.get_broker()
        self.down_sends = Sends()
        self.down = RedisBroker(url=DOWN_URL, namespace="rf-outbox-down", middleware=[])
        self.down.add_middleware(self.down_sends)
        self.actors = [
            self.configured.get_actor(name) for name in self.configured.get_declared_actors()
        ]

    def begin(self):
        dramatiq.set_broker(self.down)
        for actor in self.actors:
            actor.broker = self.down

    def end(self):
        for actor in self.actors:
            actor.broker = self.configured
        dramatiq.set_broker(self.configured)


@pytest.fixture
def outage():
    broker_outage = BrokerOutage()
    broker_outage.begin()
    yield broker_outage
    broker_outage.end()


@pytest.fixture
def sent():
    """What reaches the configured broker; emptied afterwards (no worker may be consuming)."""
    broker = dramatiq.get_broker()
    sends = Sends()
    broker.add_middleware(sends)
    yield sends.taken
    broker.middleware.remove(sends)
    broker.flush_all()


@pytest.fixture
def version():
    return make_version(SIMPLE_DEFINITION, name="Classify payment")


@pytest.fixture
def raw_key():
    return create_api_key(name="Billing backend", environment="sandbox")[1]


def post_start(client, version, raw_key, idempotency_key=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    if idempotency_key:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return client.post(
        f"/v1/procedures/{version.procedure.public_id}/sandbox",
        data=json.dumps(INPUTS),
        content_type="application/json",
        **headers,
    )


def start(version):
    return start_run(version=version, environment="sandbox", inputs=INPUTS, type="api")


def wait_for(predicate, seconds=15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def status(run) -> str:
    return Run.objects.get(pk=run.pk).status


# --- answering while the broker is down -------------------------------------------------------
def test_the_start_run_api_answers_202_with_the_run_while_the_broker_is_down(
    client, version, raw_key, outage, caplog
):
    with caplog.at_level(logging.WARNING, logger="runs.outbox"):
        response = post_start(client, version, raw_key)
    assert response.status_code == 202
    run = Run.objects.get(public_id=response.json()["id"])
    assert run.status == "pending"
    assert len(outage.down_sends.tried) == 1  # the broker was asked, and refused
    message = OutboxMessage.objects.get(run=run)
    assert message.actor == "execute_run" and message.args == [run.pk]
    assert message.next_attempt_at <= timezone.now()  # due at the scheduler's next pass
    assert "ConnectionError" in message.last_error
    [warning] = [r for r in caplog.records if r.name == "runs.outbox"]
    assert warning.levelno == logging.WARNING
    assert run.public_id in warning.getMessage()


def test_the_run_form_goes_to_the_run_page_while_the_broker_is_down(
    client, operator, version, outage
):
    client.force_login(operator)
    response = client.post(
        reverse("procedures:start", args=[version.procedure.public_id]),
        {"amount": "10", "currency": "usd", "environment": "sandbox"},
    )
    run = Run.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("runs:detail", args=[run.public_id])
    assert client.get(response.url).status_code == 200
    assert OutboxMessage.objects.filter(run=run, actor="execute_run").exists()


def test_a_retried_post_with_the_same_idempotency_key_returns_the_same_run(
    client, version, raw_key, outage
):
    first = post_start(client, version, raw_key, idempotency_key="order-42")
    again = post_start(client, version, raw_key, idempotency_key="order-42")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert Run.objects.count() == 1
    assert OutboxMessage.objects.count() == 1


def test_cancelling_over_the_api_answers_200_and_its_webhook_is_delivered_after_the_outage(
    worker, client, version, raw_key, outage
):
    receiver = Receiver()
    try:
        endpoint(receiver.url, events=["run.cancelled"])
        run = Run.objects.get(public_id=post_start(client, version, raw_key).json()["id"])
        response = client.post(
            f"/v1/runs/{run.public_id}/cancel", HTTP_AUTHORIZATION=f"Bearer {raw_key}"
        )
        assert response.status_code == 200
        assert OutboxMessage.objects.filter(run=run, actor="deliver_webhook").count() == 1
        outage.end()
        # The run's own message is done (the run is cancelled): deleted, not sent.
        assert outbox.send_outbox() == 1
        assert not OutboxMessage.objects.exists()
        worker.drain()
    finally:
        receiver.close()
    [delivery] = receiver.requests
    assert json.loads(delivery["body"])["type"] == "run.cancelled"
    signature = delivery["headers"][webhooks.SIGNATURE_HEADER]
    assert webhooks.verify_signature(delivery["body"], signature, SECRET)
    [event] = run.events.filter(type="webhook.delivery")
    assert event.data["ok"] is True


# --- sent again once the broker is back -------------------------------------------------------
def test_a_run_started_during_the_outage_is_executed_within_seconds_of_the_broker_s_return(
    worker, client, version, raw_key, outage, settings
):
    settings.OUTBOX_RETRY_SECONDS = 0.2
    run = Run.objects.get(public_id=post_start(client, version, raw_key).json()["id"])
    worker.drain()
    assert status(run) == "pending"  # nothing reached a worker
    stop = threading.Event()

    def scheduler_process():
        try:
            scheduler.run_forever(stop, interval=3600)
        finally:
            connection.close()  # this thread's own

    loop = threading.Thread(target=scheduler_process)
    loop.start()
    try:
        # Two passes while the broker is still down (after the attempt at commit): refused.
        assert wait_for(lambda: len(outage.down_sends.tried) >= 3)
        assert status(run) == "pending"
        outage.end()
        back = time.monotonic()
        assert wait_for(lambda: status(run) == "completed"), status(run)
        # Seconds, not the lease: the scheduler's next pass sent it.
        assert time.monotonic() - back < 5
    finally:
        stop.set()
        loop.join(10)


def test_a_broker_still_down_costs_one_attempt_per_pass(version, outage):
    runs = [start(version) for _ in range(3)]
    assert len(outage.down_sends.tried) == 3  # each at its commit
    assert outbox.send_outbox() == 0
    assert len(outage.down_sends.tried) == 4  # one more, then the pass stopped
    assert (
        OutboxMessage.objects.filter(
            run__in=runs, next_attempt_at__lte=timezone.now(), attempts=0
        ).count()
        == 3
    )


def test_an_approval_during_the_outage_resumes_the_run_once_the_broker_is_back(
    worker, operator, reviewer, outage
):
    version = make_version(REVIEW_DEFINITION, name="Pay with review")
    run = start_run(
        version=version, environment="sandbox", type="manual", user=operator, inputs={"amount": 7}
    )
    engine.drive(run.pk)
    assert status(run) == "awaiting_review"
    approve(request=ReviewRequest.objects.get(run=run), reviewer=reviewer)
    assert OutboxMessage.objects.filter(run=run, actor="resume_run").exists()
    outage.end()
    assert outbox.send_outbox() == 1  # the resume; the start's message is done
    worker.drain()
    assert status(run) == "completed"


def test_a_delayed_message_the_broker_refused_is_kept_until_it_is_due(version, sent, outage):
    run = start(version)
    with transaction.atomic():
        dispatch.enqueue_execution(run, delay_ms=5000)
    kept = OutboxMessage.objects.get(run=run, next_attempt_at__gt=timezone.now())
    assert kept.after_event == 1
    outage.end()
    now = timezone.now()
    assert outbox.send_outbox(now=now) == 1  # the start's message, due at once
    assert outbox.send_outbox(now=now + datetime.timedelta(seconds=6)) == 1  # the delayed one
    assert [m.args for m in sent] == [(run.pk,), (run.pk,)]


# --- what is not sent again -------------------------------------------------------------------
def test_starting_a_run_writes_its_message_in_the_same_transaction_with_one_insert(version, sent):
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        run = start(version)
        table = OutboxMessage._meta.db_table
        statements = [q["sql"] for q in captured.captured_queries if table in q["sql"]]
        assert len(statements) == 1
        if connection.vendor == "postgresql":
            # With the run's first event, in one statement (runs.sql.write).
            assert statements[0].startswith("WITH ")
            assert RunEvent._meta.db_table in statements[0]
        else:
            assert statements[0].startswith("INSERT")
    # Written by runs.sql's INSERT, read back by the ORM as it was meant.
    message = OutboxMessage.objects.get(run=run)
    assert (message.actor, message.args, message.after_event) == ("execute_run", [run.pk], 1)
    assert message.next_attempt_at - message.created_at == datetime.timedelta(seconds=60)


def test_a_rolled_back_start_leaves_no_message(version):
    with pytest.raises(RuntimeError), transaction.atomic():
        start(version)
        raise RuntimeError("the request failed later")
    assert not OutboxMessage.objects.exists()


def test_a_message_sent_at_commit_goes_again_only_if_its_run_has_not_moved_on(version, sent):
    lost, executed = start(version), start(version)
    engine.drive(executed.pk)
    assert len(sent) == 2
    created = timezone.now()
    assert outbox.send_outbox(now=created + datetime.timedelta(seconds=30)) == 0
    assert outbox.send_outbox(now=created + datetime.timedelta(seconds=61)) == 1
    assert sent[-1].args == (lost.pk,)
    assert not OutboxMessage.objects.filter(run=executed).exists()  # its work was done
    again = OutboxMessage.objects.get(run=lost)
    assert again.attempts == 1 and again.last_error == ""


def test_stuck_runs_are_sent_once_per_backoff_step_however_many_ticks(version, sent, settings):
    """The reaper used to send every stuck run at every tick (1,324 messages for 293 runs);
    with N stuck runs over M ticks it now sends at most N per backoff step."""
    settings.OUTBOX_RESEND_AFTER_SECONDS = 60
    settings.OUTBOX_MAX_BACKOFF_SECONDS = 300
    runs = [start(version) for _ in range(5)]
    sent.clear()  # their sends at commit; no worker takes them: the runs stay pending
    first = timezone.now() + datetime.timedelta(seconds=settings.RUN_LEASE_SECONDS + 1)
    sends_at = {run.pk: [] for run in runs}
    ticks = 61
    for tick in range(ticks):  # ten minutes of ticks, ten seconds apart
        before = len(sent)
        scheduler.tick(now=first + datetime.timedelta(seconds=10 * tick))
        for message in sent[before:]:
            sends_at[message.args[0]].append(10 * tick)
    # 0, then 60 s, 120 s, 240 s and 300 s (the cap) after each send.
    assert all(times == [0, 60, 180, 420] for times in sends_at.values()), sends_at
    assert len(sent) == 4 * len(runs) < ticks * len(runs)
    assert set(OutboxMessage.objects.values_list("attempts", flat=True)) == {4}


def test_a_run_with_a_message_waiting_for_its_next_attempt_is_left_to_it(version, sent):
    run = start(version)
    sent.clear()
    later = timezone.now() + datetime.timedelta(hours=1)
    assert reap_stuck_runs(now=later) == [run.pk]
    assert reap_stuck_runs(now=later + datetime.timedelta(seconds=10)) == []
    assert outbox.send_outbox(now=later + datetime.timedelta(seconds=10)) == 0
    assert len(sent) == 1
