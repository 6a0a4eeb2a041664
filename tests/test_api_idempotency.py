"""Idempotency-Key on POSTs: a repeat replays the first answer and never starts a second run."""

import json
import threading

import pytest
from django.db import connection

from rapidfolio.test_client import Client
from runs.api_keys import create_api_key
from runs.models import IdempotencyRecord, Run
from tests.conftest import SIMPLE_DEFINITION, make_version

BODY = {"amount": 10, "currency": "usd"}


@pytest.fixture
def sandbox_key(db):
    return create_api_key(name="Billing backend", environment="sandbox")


def post_start(client, version, raw_key, body=BODY, key="order-42"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(
        f"/v1/procedures/{version.procedure.public_id}/sandbox",
        data=json.dumps(body),
        content_type="application/json",
        **headers,
    )


def test_repeat_with_same_key_and_body_replays_the_first_answer(
    client, simple_version, sandbox_key
):
    first = post_start(client, simple_version, sandbox_key[1])
    second = post_start(client, simple_version, sandbox_key[1])
    assert second.status_code == first.status_code == 202
    assert second.json() == first.json()
    assert Run.objects.count() == 1


def test_same_body_with_other_key_order_counts_as_the_same_request(
    client, simple_version, sandbox_key
):
    post_start(client, simple_version, sandbox_key[1], body={"amount": 10, "currency": "usd"})
    again = post_start(
        client, simple_version, sandbox_key[1], body={"currency": "usd", "amount": 10}
    )
    assert again.status_code == 202
    assert Run.objects.count() == 1


def test_same_key_with_a_different_body_is_409(client, simple_version, sandbox_key):
    post_start(client, simple_version, sandbox_key[1])
    response = post_start(client, simple_version, sandbox_key[1], body={**BODY, "amount": 11})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Run.objects.count() == 1


def test_same_key_on_another_endpoint_is_409(client, simple_version, sandbox_key):
    other = make_version(SIMPLE_DEFINITION, "Other procedure")
    post_start(client, simple_version, sandbox_key[1])
    assert post_start(client, other, sandbox_key[1]).status_code == 409


def test_idempotency_keys_are_scoped_per_api_key(client, simple_version, sandbox_key):
    _, other_raw = create_api_key(name="Other backend", environment="sandbox")
    post_start(client, simple_version, sandbox_key[1])
    post_start(client, simple_version, other_raw)
    assert Run.objects.count() == 2


def test_requests_without_the_header_each_start_a_run(client, simple_version, sandbox_key):
    post_start(client, simple_version, sandbox_key[1], key=None)
    post_start(client, simple_version, sandbox_key[1], key=None)
    assert Run.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


def test_a_refused_request_is_not_remembered(client, simple_version, sandbox_key):
    refused = post_start(client, simple_version, sandbox_key[1], body={"amount": 0})
    accepted = post_start(client, simple_version, sandbox_key[1], body=BODY)
    assert refused.status_code == 422
    assert accepted.status_code == 202


def test_repeated_cancel_replays_the_first_answer(client, simple_version, sandbox_key):
    run_id = post_start(client, simple_version, sandbox_key[1], key=None).json()["id"]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {sandbox_key[1]}", "HTTP_IDEMPOTENCY_KEY": "c-1"}
    first = client.post(f"/v1/runs/{run_id}/cancel", **headers)
    second = client.post(f"/v1/runs/{run_id}/cancel", **headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()


def test_concurrent_duplicates_start_one_run(transactional_db, simple_version):
    _, raw = create_api_key(name="Billing backend", environment="sandbox")
    barrier = threading.Barrier(4)
    answers = []

    def send():
        try:
            barrier.wait()
            response = post_start(Client(), simple_version, raw, key="race-1")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Run.objects.count() == 1
    assert {status for status, _ in answers} == {202}
    assert len({body["id"] for _, body in answers}) == 1
