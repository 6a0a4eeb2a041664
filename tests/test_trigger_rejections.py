"""Refused webhook deliveries are counted, never unbounded: repeats aggregate, each trigger has
its own rate limit, excerpts are short, and a real sender is never locked out by a flood."""

import hashlib
import json
import threading
from datetime import timedelta

import pytest
import stripe
from django.db import connection
from django.db.models import F, Sum
from django.urls import reverse

from procedures.models import RejectedDelivery
from rapidfolio.test_client import Client
from runs.models import Run
from runs.triggers.rejections import EXCERPT_CHARS, RATE_WINDOW_SECONDS, THROTTLED_REASON
from tests.conftest import make_version
from tests.test_triggers import (
    ISSUE_DEFINITION,
    LINEAR_SECRET,
    STRIPE_SECRET,
    linear_issue,
    make_trigger,
    send_linear,
    send_stripe,
    stripe_event,
)

LIMIT = 20


@pytest.fixture(autouse=True)
def _limit(settings):
    settings.REJECTED_DELIVERY_ROWS_PER_MINUTE = LIMIT


@pytest.fixture
def stripe_trigger(simple_version):
    return make_trigger(
        simple_version,
        "stripe",
        STRIPE_SECRET,
        input_mapping={"amount": "event.data.object.amount", "currency": "'usd'"},
    )


@pytest.fixture
def other_stripe_trigger(simple_version):
    return make_trigger(simple_version, "stripe", STRIPE_SECRET)


def send_forged(client, trigger, n=0, *, remote_addr="203.0.113.9"):
    """A Stripe delivery signed with the wrong secret; `n` makes each body distinct."""
    body = json.dumps(stripe_event(f"evt_forged_{n}"))
    return client.post(
        f"/hooks/stripe/{trigger.public_id}",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe.WebhookSignature.generate_signature_header(
            body, "whsec_attacker"
        ),
        REMOTE_ADDR=remote_addr,
    )


def deliveries_counted(trigger=None) -> int:
    rows = RejectedDelivery.objects.all() if trigger is None else trigger.rejections.all()
    return rows.aggregate(total=Sum("count"))["total"] or 0


def test_a_flood_of_distinct_bad_deliveries_leaves_a_bounded_number_of_rows(client, stripe_trigger):
    answers = [send_forged(client, stripe_trigger, n).status_code for n in range(200)]
    assert RejectedDelivery.objects.count() <= LIMIT + 1
    assert RejectedDelivery.objects.filter(throttled=False).count() == LIMIT
    assert deliveries_counted(stripe_trigger) == 200
    assert answers == [400] * LIMIT + [429] * (200 - LIMIT)


def test_deliveries_beyond_the_limit_are_counted_on_one_throttled_row(client, stripe_trigger):
    for n in range(LIMIT + 30):
        send_forged(client, stripe_trigger, n)
    throttled = RejectedDelivery.objects.get(throttled=True)
    assert throttled.count == 30
    assert throttled.reason == THROTTLED_REASON
    assert throttled.trigger == stripe_trigger
    assert throttled.last_seen >= throttled.received_at


def test_repeats_of_one_body_from_one_address_add_to_one_row(client, stripe_trigger):
    answers = {send_forged(client, stripe_trigger).status_code for _ in range(200)}
    rejection = RejectedDelivery.objects.get()
    assert rejection.count == 200
    assert rejection.last_seen >= rejection.received_at
    assert answers == {400}


def test_the_same_body_from_another_address_is_a_row_of_its_own(client, stripe_trigger):
    send_forged(client, stripe_trigger, remote_addr="203.0.113.9")
    send_forged(client, stripe_trigger, remote_addr="198.51.100.7")
    assert sorted(RejectedDelivery.objects.values_list("remote_addr", flat=True)) == [
        "198.51.100.7",
        "203.0.113.9",
    ]


def test_a_repeat_after_the_aggregation_window_starts_a_new_row(client, stripe_trigger):
    send_forged(client, stripe_trigger)
    RejectedDelivery.objects.update(received_at=F("received_at") - timedelta(hours=2))
    send_forged(client, stripe_trigger)
    assert sorted(RejectedDelivery.objects.values_list("count", flat=True)) == [1, 1]


def test_the_excerpt_is_short_and_the_body_kept_as_digest_and_length(client, stripe_trigger):
    body = json.dumps({"id": "evt_big", "padding": "x" * 100_000}).encode()
    response = client.post(
        f"/hooks/stripe/{stripe_trigger.public_id}",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE="t=1,v1=00",
    )
    assert response.status_code == 400
    rejection = RejectedDelivery.objects.get()
    assert len(rejection.body_excerpt) <= EXCERPT_CHARS
    assert rejection.body_excerpt.startswith('{"id": "evt_big"')
    assert rejection.body_sha256 == hashlib.sha256(body).hexdigest()
    assert rejection.body_bytes == len(body)


def test_throttled_answer_is_a_json_429_with_retry_after(client, stripe_trigger):
    for n in range(LIMIT):
        send_forged(client, stripe_trigger, n)
    response = send_forged(client, stripe_trigger, LIMIT)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "too_many_rejected_deliveries"
    assert "signature" in error["message"]
    assert 1 <= int(response["Retry-After"]) <= RATE_WINDOW_SECONDS
    assert error["details"] == {"retry_after": int(response["Retry-After"])}


def test_another_triggers_limit_does_not_affect_this_trigger(
    client, stripe_trigger, other_stripe_trigger
):
    for n in range(LIMIT + 5):
        send_forged(client, stripe_trigger, n)
    response = send_forged(client, other_stripe_trigger, 999)
    assert response.status_code == 400
    rejection = other_stripe_trigger.rejections.get()
    assert rejection.throttled is False
    assert rejection.count == 1


def test_a_signed_delivery_is_accepted_while_bad_ones_are_throttled(client, stripe_trigger):
    for n in range(LIMIT + 5):
        send_forged(client, stripe_trigger, n)
    assert send_forged(client, stripe_trigger, 1000).status_code == 429
    response = send_stripe(client, stripe_trigger, stripe_event("evt_real"))
    assert response.status_code == 202
    assert Run.objects.get().trigger_event.external_id == "evt_real"
    assert send_forged(client, stripe_trigger, 1001).status_code == 429


def test_a_signed_linear_delivery_is_accepted_while_bad_ones_are_throttled(client, db):
    trigger = make_trigger(
        make_version(ISSUE_DEFINITION, name="Triage issue"),
        "linear",
        LINEAR_SECRET,
        input_mapping={"title": "event.data.title", "priority": "event.data.priority"},
    )
    for n in range(LIMIT + 5):
        send_linear(client, trigger, linear_issue(issue_id=f"iss_{n}"), secret="wrong")
    forged = linear_issue(issue_id="iss_forged")
    assert send_linear(client, trigger, forged, secret="wrong").status_code == 429
    assert send_linear(client, trigger, linear_issue()).status_code == 202


def test_rows_are_itemised_again_once_the_minute_has_passed(client, stripe_trigger):
    for n in range(LIMIT + 1):
        send_forged(client, stripe_trigger, n)
    RejectedDelivery.objects.update(
        received_at=F("received_at") - timedelta(seconds=RATE_WINDOW_SECONDS + 1)
    )
    assert send_forged(client, stripe_trigger, 500).status_code == 400
    assert RejectedDelivery.objects.filter(throttled=False).count() == LIMIT + 1


def test_concurrent_floods_stay_within_the_limit_and_count_every_delivery(
    transactional_db, simple_version
):
    trigger = make_trigger(simple_version, "stripe", STRIPE_SECRET)
    barrier = threading.Barrier(4)

    def flood(sender):
        try:
            barrier.wait()
            for n in range(15):
                send_forged(Client(), trigger, f"{sender}_{n}")
        finally:
            connection.close()

    threads = [threading.Thread(target=flood, args=(sender,)) for sender in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert deliveries_counted(trigger) == 60
    assert RejectedDelivery.objects.filter(throttled=False).count() == LIMIT
    assert RejectedDelivery.objects.filter(throttled=True).count() == 1


def test_admin_list_shows_how_many_deliveries_were_refused(client, admin_user, stripe_trigger):
    for _ in range(7):
        send_forged(client, stripe_trigger, remote_addr="203.0.113.9")
    send_forged(client, stripe_trigger, remote_addr="198.51.100.7")
    client.force_login(admin_user)
    response = client.get(reverse("admin:procedures_rejecteddelivery_changelist"))
    assert response.status_code == 200
    assert "8 refused deliveries in 2 rows" in response.content.decode()
    rejection = RejectedDelivery.objects.get(remote_addr="203.0.113.9")
    page = client.get(reverse("admin:procedures_rejecteddelivery_change", args=[rejection.pk]))
    assert page.status_code == 200
    assert rejection.body_sha256 in page.content.decode()
