"""Stripe and Linear webhook triggers: verified, deduplicated, mapped to inputs, one run each."""

import hashlib
import hmac
import json
import threading
import time

import pytest
import stripe
from django.db import connection

from procedures.models import RejectedDelivery, Trigger, TriggerEvent
from rapidfolio.test_client import Client
from runs.models import Run, RunStatus, RunType
from runs.triggers.services import STRIPE_CLOCK_SKEW_SECONDS, accept_event
from tests.conftest import make_version

STRIPE_SECRET = "whsec_test_secret"
LINEAR_SECRET = "lin_wh_test_secret"

ISSUE_DEFINITION = {
    "input_schema": {
        "type": "object",
        "properties": {"title": {"type": "string"}, "priority": {"type": "integer"}},
        "required": ["title", "priority"],
        "additionalProperties": False,
    },
    "start": "done",
    "nodes": {"done": {"type": "output", "value": {"triaged": "inputs.title"}}},
}


def make_trigger(version, kind, secret, **fields) -> Trigger:
    trigger = Trigger(
        procedure=version.procedure,
        environment="sandbox",
        kind=kind,
        name=f"{kind} trigger",
        **fields,
    )
    trigger.set_signing_secret(secret)
    trigger.save()
    return trigger


@pytest.fixture
def stripe_trigger(simple_version):
    return make_trigger(
        simple_version,
        "stripe",
        STRIPE_SECRET,
        event_types=["payment_intent.succeeded"],
        input_mapping={
            "amount": "event.data.object.amount",
            "currency": "event.data.object.currency",
        },
    )


@pytest.fixture
def linear_trigger(db):
    version = make_version(ISSUE_DEFINITION, name="Triage issue")
    return make_trigger(
        version,
        "linear",
        LINEAR_SECRET,
        input_mapping={"title": "event.data.title", "priority": "event.data.priority"},
    )


def stripe_event(event_id="evt_1", type="payment_intent.succeeded", amount=2500, currency="usd"):
    return {
        "id": event_id,
        "object": "event",
        "type": type,
        "data": {"object": {"id": "pi_1", "amount": amount, "currency": currency}},
    }


def send_stripe(client, trigger, event, *, secret=STRIPE_SECRET, timestamp=None, header=None):
    body = json.dumps(event)
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
    return client.post(
        f"/hooks/stripe/{trigger.public_id}",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header,
    )


def linear_issue(
    *,
    action="create",
    type="Issue",
    sent_at=None,
    title="Refund request",
    issue_id="iss_1",
    created_at="2026-01-05T10:00:00.000Z",
):
    return {
        "action": action,
        "type": type,
        "data": {"id": issue_id, "title": title, "priority": 2},
        "url": "https://linear.app/acme/issue/OPS-1",
        "createdAt": created_at,
        "webhookId": "wh_1",
        "webhookTimestamp": int((time.time() if sent_at is None else sent_at) * 1000),
    }


def send_linear(client, trigger, payload, *, delivery="dlv_1", secret=LINEAR_SECRET):
    body = json.dumps(payload).encode()
    headers = {"HTTP_LINEAR_SIGNATURE": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if delivery is not None:
        headers["HTTP_LINEAR_DELIVERY"] = delivery
    return client.post(
        f"/hooks/linear/{trigger.public_id}",
        data=body,
        content_type="application/json",
        **headers,
    )


# --- Stripe ---------------------------------------------------------------------------------
def test_stripe_event_starts_a_run_with_mapped_inputs(client, stripe_trigger):
    response = send_stripe(client, stripe_trigger, stripe_event())
    assert response.status_code == 202
    run = Run.objects.get(public_id=response.json()["run"])
    assert run.type == RunType.TRIGGER
    assert run.environment == "sandbox"
    assert run.started_by_trigger == stripe_trigger
    assert run.trigger_event.external_id == "evt_1"
    assert run.trigger_event.outcome == "started"
    assert run.inputs == {"amount": 2500, "currency": "usd"}


def test_redelivered_stripe_event_answers_with_the_first_run(client, stripe_trigger):
    first = send_stripe(client, stripe_trigger, stripe_event())
    again = send_stripe(client, stripe_trigger, stripe_event())
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["run"] == first.json()["run"]
    assert Run.objects.count() == 1


def test_stripe_event_of_another_type_is_ignored_and_recorded(client, stripe_trigger):
    response = send_stripe(client, stripe_trigger, stripe_event(type="charge.refunded"))
    assert response.status_code == 200
    assert "charge.refunded" in response.json()["ignored"]
    assert TriggerEvent.objects.get(external_id="evt_1").outcome == "ignored"
    assert Run.objects.count() == 0


def test_stripe_trigger_without_event_types_takes_every_type(client, stripe_trigger):
    stripe_trigger.event_types = []
    stripe_trigger.save()
    response = send_stripe(client, stripe_trigger, stripe_event(type="charge.refunded"))
    assert response.status_code == 202


def test_stripe_event_with_a_wrong_signature_is_rejected_and_recorded(client, stripe_trigger):
    response = send_stripe(client, stripe_trigger, stripe_event(), secret="whsec_other")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "delivery_rejected"
    rejection = RejectedDelivery.objects.get()
    assert rejection.trigger == stripe_trigger
    assert "signature" in rejection.reason
    assert "evt_1" in rejection.body_excerpt
    assert TriggerEvent.objects.count() == 0
    assert Run.objects.count() == 0


def test_unsigned_garbage_is_rejected_and_recorded(client, stripe_trigger):
    response = client.post(
        f"/hooks/stripe/{stripe_trigger.public_id}",
        data=b"\x00\xff garbage",
        content_type="application/octet-stream",
        HTTP_STRIPE_SIGNATURE="t=1,v1=00",
    )
    assert response.status_code == 400
    assert RejectedDelivery.objects.get().body_excerpt.endswith("garbage")


def test_stripe_signature_header_with_non_ascii_characters_is_rejected(client, stripe_trigger):
    response = send_stripe(client, stripe_trigger, stripe_event(), header="t=1,v1=é")
    assert response.status_code == 400


def test_linear_signature_header_with_non_ascii_characters_is_rejected(client, linear_trigger):
    body = json.dumps(linear_issue()).encode()
    response = client.post(
        f"/hooks/linear/{linear_trigger.public_id}",
        data=body,
        content_type="application/json",
        HTTP_LINEAR_SIGNATURE="é" * 64,
    )
    assert response.status_code == 400


def test_stripe_event_signed_more_than_300_seconds_ago_is_rejected(client, stripe_trigger):
    response = send_stripe(client, stripe_trigger, stripe_event(), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert "tolerance" in RejectedDelivery.objects.get().reason
    assert Run.objects.count() == 0


def test_stripe_event_signed_beyond_the_clock_skew_in_the_future_is_rejected(
    client, stripe_trigger
):
    future = int(time.time()) + STRIPE_CLOCK_SKEW_SECONDS + 10
    response = send_stripe(client, stripe_trigger, stripe_event(), timestamp=future)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "delivery_rejected"
    rejection = RejectedDelivery.objects.get()
    assert "future" in rejection.reason
    assert rejection.trigger == stripe_trigger
    assert TriggerEvent.objects.count() == 0
    assert Run.objects.count() == 0


def test_stripe_event_signed_just_inside_the_clock_skew_is_accepted(client, stripe_trigger):
    ahead = int(time.time()) + STRIPE_CLOCK_SKEW_SECONDS - 5
    response = send_stripe(client, stripe_trigger, stripe_event(), timestamp=ahead)
    assert response.status_code == 202
    assert RejectedDelivery.objects.count() == 0


def test_stripe_event_without_signature_header_is_rejected(client, stripe_trigger):
    response = client.post(
        f"/hooks/stripe/{stripe_trigger.public_id}",
        data=json.dumps(stripe_event()),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert RejectedDelivery.objects.count() == 1


def test_signed_body_that_is_not_an_event_is_rejected(client, stripe_trigger):
    response = send_stripe(client, stripe_trigger, ["not", "an", "event"])
    assert response.status_code == 400
    assert Run.objects.count() == 0


def test_signed_body_with_json_the_database_cannot_store_is_rejected(client, stripe_trigger):
    body = '{"id": "evt_1", "type": "payment_intent.succeeded", "amount": NaN}'
    response = client.post(
        f"/hooks/stripe/{stripe_trigger.public_id}",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe.WebhookSignature.generate_signature_header(
            body, STRIPE_SECRET
        ),
    )
    assert response.status_code == 400
    assert TriggerEvent.objects.count() == 0


def test_stripe_event_with_inputs_failing_the_schema_is_recorded_not_started(
    client, stripe_trigger
):
    response = send_stripe(client, stripe_trigger, stripe_event(currency="yen"))
    assert response.status_code == 200
    assert response.json()["outcome"] == "invalid_inputs"
    event = TriggerEvent.objects.get()
    assert event.outcome == "invalid_inputs"
    assert "currency" in event.detail
    assert Run.objects.count() == 0


def test_stripe_event_missing_a_mapped_field_is_recorded_as_invalid_inputs(client, stripe_trigger):
    event = stripe_event()
    del event["data"]["object"]["amount"]
    response = send_stripe(client, stripe_trigger, event)
    assert response.status_code == 200
    assert "amount" in TriggerEvent.objects.get().detail


def test_unknown_trigger_id_is_404(client, db):
    response = client.post("/hooks/stripe/trg_nope", data="{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_disabled_trigger_is_404_and_starts_nothing(client, stripe_trigger):
    stripe_trigger.enabled = False
    stripe_trigger.save()
    assert send_stripe(client, stripe_trigger, stripe_event()).status_code == 404
    assert Run.objects.count() == 0


def test_trigger_of_another_kind_is_404(client, linear_trigger):
    assert send_stripe(client, linear_trigger, stripe_event()).status_code == 404


def test_get_on_a_hook_is_405(client, stripe_trigger):
    response = client.get(f"/hooks/stripe/{stripe_trigger.public_id}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_run_from_a_stripe_event_is_executed_by_the_worker(stripe_trigger, worker):
    response = send_stripe(Client(), stripe_trigger, stripe_event(amount=2500))
    worker.drain()
    run = Run.objects.get(public_id=response.json()["run"])
    assert run.status == RunStatus.COMPLETED
    assert run.output == {"size": "big", "amount": 2500}


def test_concurrent_deliveries_of_one_event_start_one_run(transactional_db, simple_version):
    trigger = make_trigger(
        simple_version,
        "stripe",
        STRIPE_SECRET,
        input_mapping={"amount": "event.data.object.amount", "currency": "'usd'"},
    )
    barrier = threading.Barrier(4)
    answers = []

    def deliver():
        try:
            barrier.wait()
            answers.append(send_stripe(Client(), trigger, stripe_event("evt_race")).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Run.objects.count() == 1
    assert len({answer["run"] for answer in answers}) == 1


# --- Linear ---------------------------------------------------------------------------------
def test_linear_issue_created_starts_a_run(client, linear_trigger):
    response = send_linear(client, linear_trigger, linear_issue())
    assert response.status_code == 202
    run = Run.objects.get(public_id=response.json()["run"])
    assert run.inputs == {"title": "Refund request", "priority": 2}
    assert run.trigger_event.external_id == "wh_1:2026-01-05T10:00:00.000Z:Issue.create:iss_1"
    assert run.trigger_event.event_type == "Issue.create"


def test_linear_redelivery_with_the_same_delivery_id_starts_nothing(client, linear_trigger):
    first = send_linear(client, linear_trigger, linear_issue())
    again = send_linear(client, linear_trigger, linear_issue())
    assert again.status_code == 200
    assert again.json()["run"] == first.json()["run"]
    assert Run.objects.count() == 1


def test_linear_redelivery_signed_again_later_is_recognised_by_its_signed_ids(
    client, linear_trigger
):
    # Linear stamps each attempt anew, so a genuine redelivery is a different signed body.
    first = send_linear(client, linear_trigger, linear_issue(sent_at=time.time() - 30))
    again = send_linear(client, linear_trigger, linear_issue(), delivery="dlv_2")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["run"] == first.json()["run"]
    assert Run.objects.count() == 1


def test_replayed_linear_body_starts_one_run_whatever_its_delivery_header(client, linear_trigger):
    payload = linear_issue()
    first = send_linear(client, linear_trigger, payload, delivery="dlv_1")
    replays = [
        send_linear(client, linear_trigger, payload, delivery=delivery)
        for delivery in ("dlv_forged", None, "dlv_1")
    ]
    assert first.status_code == 202
    assert [replay.status_code for replay in replays] == [200, 200, 200]
    assert [replay.json()["duplicate"] for replay in replays] == [True, True, True]
    assert {replay.json()["run"] for replay in replays} == {first.json()["run"]}
    assert Run.objects.count() == 1
    assert TriggerEvent.objects.count() == 1


def test_two_different_linear_events_start_two_runs(client, linear_trigger):
    first = send_linear(client, linear_trigger, linear_issue(issue_id="iss_1"), delivery="dlv_1")
    second = send_linear(
        client,
        linear_trigger,
        linear_issue(issue_id="iss_2", created_at="2026-01-05T10:00:01.000Z"),
        delivery="dlv_1",
    )
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["run"] != second.json()["run"]
    assert Run.objects.count() == 2


def test_two_linear_issues_created_in_the_same_millisecond_start_two_runs(client, linear_trigger):
    send_linear(client, linear_trigger, linear_issue(issue_id="iss_1"))
    send_linear(client, linear_trigger, linear_issue(issue_id="iss_2"))
    assert Run.objects.count() == 2


def test_replayed_linear_body_without_ids_is_recognised_by_its_digest(client, linear_trigger):
    payload = linear_issue()
    del payload["webhookId"], payload["createdAt"]
    first = send_linear(client, linear_trigger, payload, delivery="dlv_1")
    again = send_linear(client, linear_trigger, payload, delivery="dlv_2")
    body = json.dumps(payload).encode()
    assert Run.objects.get().trigger_event.external_id == (
        "sha256:" + hashlib.sha256(body).hexdigest()
    )
    assert again.json()["run"] == first.json()["run"]


def test_a_signed_body_accepted_once_is_a_duplicate_under_any_external_id(linear_trigger):
    # The general rule for every HMAC trigger: whatever id its receiver derives, the same
    # signed body never starts a second run.
    body = json.dumps(linear_issue()).encode()
    first = accept_event(
        trigger=linear_trigger,
        external_id="id-a",
        event_type="Issue.create",
        payload=json.loads(body),
        wanted=True,
        signed_body=body,
    )
    again = accept_event(
        trigger=linear_trigger,
        external_id="id-b",
        event_type="Issue.create",
        payload=json.loads(body),
        wanted=True,
        signed_body=body,
    )
    assert again.duplicate is True
    assert again.event == first.event
    assert Run.objects.count() == 1


def test_linear_issue_update_is_ignored(client, linear_trigger):
    response = send_linear(client, linear_trigger, linear_issue(action="update"))
    assert response.status_code == 200
    assert TriggerEvent.objects.get().outcome == "ignored"
    assert Run.objects.count() == 0


def test_linear_comment_created_is_ignored(client, linear_trigger):
    send_linear(client, linear_trigger, linear_issue(type="Comment"))
    assert Run.objects.count() == 0


def test_linear_delivery_with_a_wrong_signature_is_rejected(client, linear_trigger):
    response = send_linear(client, linear_trigger, linear_issue(), secret="wrong")
    assert response.status_code == 400
    assert RejectedDelivery.objects.get().trigger == linear_trigger
    assert Run.objects.count() == 0


def test_linear_delivery_older_than_60_seconds_is_rejected(client, linear_trigger):
    response = send_linear(client, linear_trigger, linear_issue(sent_at=time.time() - 61))
    assert response.status_code == 400
    assert "webhookTimestamp" in RejectedDelivery.objects.get().reason


def test_linear_delivery_without_timestamp_is_rejected(client, linear_trigger):
    payload = linear_issue()
    del payload["webhookTimestamp"]
    assert send_linear(client, linear_trigger, payload).status_code == 400
