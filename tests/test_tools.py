"""The integration tools: sandbox simulators, and live calls against local HTTP servers."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from jsonschema import Draft202012Validator

from procedures.models import Connection
from procedures.tools import (
    PermanentToolError,
    ToolContext,
    TransientToolError,
    all_tools,
    get_tool,
)

SECRET = "sk_test_51SecretKeyThatMustNeverBeRecorded"
RUN_ID = "run_01jbz8q3m4x5y6z7a8b9c0d1e2"


def context(attempt=1, environment="sandbox", key=None, connection=None, node="step"):
    return ToolContext(
        run_public_id=RUN_ID,
        node_id=node,
        attempt=attempt,
        environment=environment,
        idempotency_key=key or f"{RUN_ID}:{node}:{attempt}",
        connection=connection,
    )


# --- a local HTTP server standing in for the integration ---------------------------------------
class FakeServer:
    """Records every request and answers with `self.status` / `self.body` (after `self.delay`)."""

    def __init__(self):
        self.requests = []
        self.status = 200
        self.body = {"ok": True}
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length).decode(),
                    }
                )
                if fake.delay:
                    time.sleep(fake.delay)
                payload = fake.body if isinstance(fake.body, str) else json.dumps(fake.body)
                data = payload.encode()
                try:
                    self.send_response(fake.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def last(self):
        return self.requests[-1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


@pytest.fixture
def closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def make_connection(integration, environment="live", config=None, secret=SECRET):
    connection = Connection(
        integration=integration, environment=environment, name=f"{integration} {environment}"
    )
    connection.config = config or {}
    connection.set_secret(secret)
    connection.save()
    return connection


def assert_no_secret(*texts):
    for text in texts:
        assert SECRET not in text


# --- the registry ------------------------------------------------------------------------------
def test_every_builtin_tool_is_registered():
    assert set(all_tools()) == {
        "http.request",
        "stripe.create_payment_intent",
        "stripe.refund",
        "credit.check",
        "bank.wire_transfer",
        "accounts.close",
        "notify.email",
    }


@pytest.mark.parametrize("name", sorted(all_tools()))
def test_tool_input_schema_is_valid_and_refuses_unknown_inputs(name):
    tool = get_tool(name)
    Draft202012Validator.check_schema(tool.input_schema)
    assert tool.input_schema["additionalProperties"] is False
    assert tool.description and tool.integration


@pytest.mark.parametrize("name", sorted(all_tools()))
def test_tool_refuses_inputs_that_do_not_match_its_schema(name):
    with pytest.raises(PermanentToolError, match="not valid"):
        get_tool(name).call({"unexpected": 1}, context())


# --- http.request ------------------------------------------------------------------------------
def test_http_request_returns_status_and_parsed_json_body(server):
    server.body = {"balance": 1250, "currency": "EUR"}
    result = get_tool("http.request").call(
        {"method": "GET", "url": server.url + "/balance"}, context()
    )
    assert result.output == {"status": 200, "body": {"balance": 1250, "currency": "EUR"}}


def test_http_request_sends_the_idempotency_key(server):
    get_tool("http.request").call(
        {"method": "POST", "url": server.url + "/payments", "body": {"amount": 100}},
        context(key="run_abc:pay:2"),
    )
    assert server.last["headers"]["Idempotency-Key"] == "run_abc:pay:2"


def test_http_request_records_the_exact_body_sent(server):
    result = get_tool("http.request").call(
        {"method": "POST", "url": server.url + "/payments", "body": {"amount": 100, "note": "é"}},
        context(),
    )
    recorded = json.loads(result.request)
    assert recorded["method"] == "POST"
    assert recorded["url"] == server.url + "/payments"
    assert result.request.endswith('"body": ' + server.last["body"] + "}")
    assert recorded["body"] == {"amount": 100, "note": "é"}


def test_http_request_records_the_response_exactly_as_received(server):
    server.body = '{"id":  "pay_1",\n "ok": true}'
    result = get_tool("http.request").call({"method": "GET", "url": server.url}, context())
    assert result.response == '{"status": 200, "body": {"id":  "pay_1",\n "ok": true}}'
    assert json.loads(result.response) == {"status": 200, "body": {"id": "pay_1", "ok": True}}


def test_http_request_keeps_a_non_json_body_as_text(server):
    server.body = "<html>maintenance</html>"
    result = get_tool("http.request").call({"method": "GET", "url": server.url}, context())
    assert result.output == {"status": 200, "body": "<html>maintenance</html>"}
    assert json.loads(result.response)["body"] == "<html>maintenance</html>"


def test_http_request_sends_connection_secret_as_bearer_and_never_records_it(db, server):
    server.body = {"echo": SECRET}
    connection = make_connection("http", config={})
    result = get_tool("http.request").call(
        {"method": "POST", "url": server.url, "body": {"x": 1}},
        context(environment="live", connection=connection),
    )
    assert server.last["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert json.loads(result.request)["headers"]["Authorization"] == "[redacted]"
    assert_no_secret(result.request, result.response, json.dumps(result.output))


def test_http_request_refuses_to_send_the_secret_outside_the_connection_base_url(db, server):
    connection = make_connection("http", config={"base_url": "https://api.partner.example"})
    with pytest.raises(PermanentToolError, match="only sent to https://api.partner.example"):
        get_tool("http.request").call(
            {"method": "GET", "url": server.url + "/steal"},
            context(environment="live", connection=connection),
        )
    assert server.requests == []


def test_http_request_redacts_credential_headers_given_in_inputs(server):
    result = get_tool("http.request").call(
        {"method": "GET", "url": server.url, "headers": {"X-Api-Key": "key_abc123"}}, context()
    )
    assert server.last["headers"]["X-Api-Key"] == "key_abc123"
    assert "key_abc123" not in result.request


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_http_request_server_error_or_rate_limit_is_transient(server, status):
    server.status = status
    server.body = {"error": "try later"}
    with pytest.raises(TransientToolError) as caught:
        get_tool("http.request").call({"method": "POST", "url": server.url}, context())
    assert f"HTTP {status}" in caught.value.message
    assert json.loads(caught.value.response) == {"status": status, "body": {"error": "try later"}}
    assert json.loads(caught.value.request)["url"] == server.url


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_http_request_client_error_is_permanent(server, status):
    server.status = status
    server.body = {"error": "invalid iban"}
    with pytest.raises(PermanentToolError) as caught:
        get_tool("http.request").call({"method": "POST", "url": server.url}, context())
    assert json.loads(caught.value.response)["status"] == status
    assert "invalid iban" in caught.value.message


def test_http_request_timeout_is_transient(server):
    server.delay = 1.0
    started = time.monotonic()
    with pytest.raises(TransientToolError, match="within 0.2 seconds") as caught:
        get_tool("http.request").call(
            {"method": "GET", "url": server.url, "timeout_seconds": 0.2}, context()
        )
    assert time.monotonic() - started < 0.9
    assert caught.value.response == ""
    assert json.loads(caught.value.request)["method"] == "GET"


def test_http_request_default_timeout_comes_from_settings(server, settings):
    settings.TOOL_HTTP_TIMEOUT_SECONDS = 0.2
    server.delay = 1.0
    with pytest.raises(TransientToolError, match="within 0.2 seconds"):
        get_tool("http.request").call({"method": "GET", "url": server.url}, context())


def test_http_request_timeout_above_the_limit_is_refused():
    with pytest.raises(PermanentToolError, match="timeout_seconds"):
        get_tool("http.request").call(
            {"method": "GET", "url": "http://127.0.0.1:9", "timeout_seconds": 600}, context()
        )


def test_http_request_connection_refused_is_transient(closed_port_url):
    with pytest.raises(TransientToolError, match="could not reach"):
        get_tool("http.request").call({"method": "GET", "url": closed_port_url}, context())


# --- simulated tools: sandbox ------------------------------------------------------------------
VALID_INPUTS = {
    "credit.check": {"customer_id": "cust_1001", "requested_amount": 250000, "currency": "USD"},
    "bank.wire_transfer": {
        "amount": 1250000,
        "currency": "EUR",
        "beneficiary_name": "Acme Supplies GmbH",
        "beneficiary_iban": "DE89370400440532013000",
        "beneficiary_bic": "COBADEFFXXX",
        "reference": "INV-2024-0042",
    },
    "accounts.close": {"account_id": "acct_1001", "reason": "customer_request"},
    "notify.email": {"to": "ap@acme.example", "subject": "Paid", "body": "Your invoice is paid."},
    "stripe.create_payment_intent": {"amount": 12500, "currency": "USD", "customer": "cus_1001"},
    "stripe.refund": {"payment_intent": "pi_3Abc123", "amount": 500},
}
SUBJECT = {
    "credit.check": "customer_id",
    "bank.wire_transfer": "reference",
    "accounts.close": "account_id",
    "notify.email": "to",
    "stripe.create_payment_intent": "customer",
    "stripe.refund": "payment_intent",
}
SUBJECT_VALUE = {
    "credit.check": "cust_{}_1",
    "bank.wire_transfer": "INV-{}-7",
    "accounts.close": "acct_{}_9",
    "notify.email": "{}@acme.example",
    "stripe.create_payment_intent": "cus_{}_1",
    "stripe.refund": "pi_{}_1",
}
SIMULATED = sorted(VALID_INPUTS)
HTTP_SIMULATED = ["accounts.close", "bank.wire_transfer", "credit.check", "notify.email"]


def with_subject(name, marker):
    return {**VALID_INPUTS[name], SUBJECT[name]: SUBJECT_VALUE[name].format(marker)}


@pytest.mark.parametrize("name", SIMULATED)
def test_simulated_tool_gives_the_same_result_for_the_same_call(name):
    first = get_tool(name).call(VALID_INPUTS[name], context())
    second = get_tool(name).call(VALID_INPUTS[name], context())
    assert first == second


@pytest.mark.parametrize("name", SIMULATED)
def test_simulated_tool_ids_follow_the_idempotency_key(name):
    first = get_tool(name).call(VALID_INPUTS[name], context(key="k1"))
    second = get_tool(name).call(VALID_INPUTS[name], context(key="k2"))
    assert first.output["id"] != second.output["id"]


@pytest.mark.parametrize("name", SIMULATED)
def test_simulated_tool_records_request_and_response_as_json(name):
    result = get_tool(name).call(VALID_INPUTS[name], context(key="key-1"))
    request, response = json.loads(result.request), json.loads(result.response)
    assert request["simulated"] is True
    assert request["headers"] == {"Idempotency-Key": "key-1"}
    assert response == {"simulated": True, "status": 200, "body": result.output}


@pytest.mark.parametrize("name", SIMULATED)
def test_flaky_subject_fails_transiently_on_attempts_1_and_2_then_succeeds(name):
    inputs = with_subject(name, "flaky")
    for attempt in (1, 2):
        with pytest.raises(TransientToolError) as caught:
            get_tool(name).call(inputs, context(attempt=attempt))
        assert caught.value.request and caught.value.response
    assert get_tool(name).call(inputs, context(attempt=3)).output["id"]


@pytest.mark.parametrize("name", SIMULATED)
def test_timeout_subject_fails_transiently_on_every_attempt(name):
    inputs = with_subject(name, "timeout")
    for attempt in (1, 5, 10):
        with pytest.raises(TransientToolError, match="simulated timeout"):
            get_tool(name).call(inputs, context(attempt=attempt))


@pytest.mark.parametrize("name", SIMULATED)
def test_blocked_subject_fails_permanently(name):
    with pytest.raises(PermanentToolError) as caught:
        get_tool(name).call(with_subject(name, "blocked"), context(attempt=3))
    assert json.loads(caught.value.response)["status"] >= 400


@pytest.mark.parametrize("name", SIMULATED)
def test_simulated_tool_in_live_without_connection_is_permanent(name):
    integration = get_tool(name).integration
    with pytest.raises(
        PermanentToolError, match=f"no live connection configured for {integration}"
    ):
        get_tool(name).call(VALID_INPUTS[name], context(environment="live"))


def test_credit_check_score_depends_only_on_the_customer():
    tool = get_tool("credit.check")
    first = tool.call({"customer_id": "cust_1001"}, context(key="a")).output
    second = tool.call({"customer_id": "cust_1001"}, context(key="b")).output
    other = tool.call({"customer_id": "cust_1002"}, context(key="a")).output
    assert first["score"] == second["score"]
    assert 300 <= first["score"] <= 850
    assert first["band"] in {"excellent", "good", "fair", "poor", "very_poor"}
    assert other["customer_id"] == "cust_1002"


def test_credit_check_says_whether_the_request_is_within_the_limit():
    output = get_tool("credit.check").call(VALID_INPUTS["credit.check"], context()).output
    assert output["within_limit"] == (output["recommended_limit"] >= 250000)


def test_wire_transfer_returns_a_submitted_wire_with_uetr():
    output = (
        get_tool("bank.wire_transfer").call(VALID_INPUTS["bank.wire_transfer"], context()).output
    )
    assert output["status"] == "submitted"
    assert output["beneficiary"]["iban"] == "DE89370400440532013000"
    assert output["uetr"][14] == "4"
    assert output["id"].startswith("wt_")


def test_wire_transfer_over_the_daily_limit_is_permanent():
    inputs = {**VALID_INPUTS["bank.wire_transfer"], "amount": 1_000_000_001}
    with pytest.raises(PermanentToolError, match="daily wire limit"):
        get_tool("bank.wire_transfer").call(inputs, context())


def test_wire_transfer_with_a_malformed_iban_is_permanent():
    inputs = {**VALID_INPUTS["bank.wire_transfer"], "beneficiary_iban": "not an iban"}
    with pytest.raises(PermanentToolError, match="beneficiary_iban"):
        get_tool("bank.wire_transfer").call(inputs, context())


def test_account_close_transfers_a_positive_balance_to_the_given_iban():
    inputs = {**VALID_INPUTS["accounts.close"], "transfer_balance_to": "DE89370400440532013000"}
    output = get_tool("accounts.close").call(inputs, context()).output
    assert output["final_balance"]["amount"] > 0
    assert output["disposition"] == "transferred"
    assert output["balance_transfer"]["amount"] == output["final_balance"]["amount"]


def test_account_close_without_iban_pays_the_balance_by_cheque():
    output = get_tool("accounts.close").call(VALID_INPUTS["accounts.close"], context()).output
    assert output["status"] == "closed"
    assert output["disposition"] == "cheque_issued"


def test_account_close_for_fraud_holds_the_balance_for_review():
    inputs = {**VALID_INPUTS["accounts.close"], "reason": "fraud"}
    output = get_tool("accounts.close").call(inputs, context()).output
    assert output["disposition"] == "held_for_review"
    assert output["balance_transfer"] is None


def test_account_close_with_a_negative_balance_is_permanent():
    inputs = {**VALID_INPUTS["accounts.close"], "account_id": "acct_overdrawn_7"}
    with pytest.raises(PermanentToolError, match="negative balance"):
        get_tool("accounts.close").call(inputs, context())


def test_notify_email_returns_a_message_id():
    output = get_tool("notify.email").call(VALID_INPUTS["notify.email"], context()).output
    assert output["status"] == "queued"
    assert output["message_id"].startswith("<") and output["message_id"].endswith(">")


# --- simulated tools: over HTTP with a connection ----------------------------------------------
LIVE_PATHS = {
    "credit.check": "/credit-checks",
    "bank.wire_transfer": "/wire-transfers",
    "accounts.close": "/accounts/acct_1001/close",
    "notify.email": "/messages",
}


@pytest.mark.parametrize("name", HTTP_SIMULATED)
def test_tool_with_connection_posts_its_inputs_to_the_base_url(db, server, name):
    server.body = {"id": "remote_1", "status": "accepted"}
    connection = make_connection(get_tool(name).integration, config={"base_url": server.url})
    result = get_tool(name).call(
        VALID_INPUTS[name], context(environment="live", key="run_x:n:1", connection=connection)
    )
    assert server.last["method"] == "POST"
    assert server.last["path"] == LIVE_PATHS[name]
    assert json.loads(server.last["body"]) == VALID_INPUTS[name]
    assert server.last["headers"]["Idempotency-Key"] == "run_x:n:1"
    assert server.last["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert result.output == {"id": "remote_1", "status": "accepted"}
    assert_no_secret(result.request, result.response)


def test_sandbox_connection_replaces_the_simulator(db, server):
    server.body = {"score": 701}
    connection = make_connection("credit", environment="sandbox", config={"base_url": server.url})
    result = get_tool("credit.check").call(
        {"customer_id": "cust_flaky_1"}, context(connection=connection)
    )
    assert result.output == {"score": 701}


def test_tool_with_connection_server_error_is_transient(db, server):
    server.status = 503
    connection = make_connection("bank", config={"base_url": server.url})
    with pytest.raises(TransientToolError) as caught:
        get_tool("bank.wire_transfer").call(
            VALID_INPUTS["bank.wire_transfer"], context(environment="live", connection=connection)
        )
    assert_no_secret(caught.value.request, caught.value.response, caught.value.message)


def test_tool_with_connection_client_error_is_permanent(db, server):
    server.status = 422
    server.body = {"error": {"code": "invalid_bic"}}
    connection = make_connection("bank", config={"base_url": server.url})
    with pytest.raises(PermanentToolError, match="invalid_bic"):
        get_tool("bank.wire_transfer").call(
            VALID_INPUTS["bank.wire_transfer"], context(environment="live", connection=connection)
        )


def test_tool_with_connection_without_base_url_is_permanent(db):
    connection = make_connection("email", config={})
    with pytest.raises(PermanentToolError, match="no base_url"):
        get_tool("notify.email").call(
            VALID_INPUTS["notify.email"], context(environment="live", connection=connection)
        )


# --- Stripe: sandbox simulator -----------------------------------------------------------------
def test_stripe_sandbox_payment_intent_is_stripe_shaped():
    output = (
        get_tool("stripe.create_payment_intent")
        .call(
            {
                "amount": 12500,
                "currency": "USD",
                "customer": "cus_1",
                "metadata": {"invoice": "42"},
            },
            context(),
        )
        .output
    )
    assert output["id"].startswith("pi_")
    assert output["object"] == "payment_intent"
    assert (output["amount"], output["currency"], output["status"]) == (12500, "usd", "succeeded")
    assert output["metadata"] == {"invoice": "42"}
    assert isinstance(output["created"], int)


def test_stripe_sandbox_records_form_params_as_json():
    result = get_tool("stripe.create_payment_intent").call(
        {"amount": 12500, "currency": "usd"}, context(key="idem-1")
    )
    assert json.loads(result.request) == {
        "simulated": True,
        "method": "POST",
        "path": "/v1/payment_intents",
        "headers": {"Idempotency-Key": "idem-1"},
        "params": {"amount": 12500, "currency": "usd"},
    }


@pytest.mark.parametrize(
    ("amount", "decline_code"), [(400002, "generic_decline"), (409995, "insufficient_funds")]
)
def test_stripe_sandbox_decline_amount_is_a_permanent_card_decline(amount, decline_code):
    with pytest.raises(PermanentToolError, match=decline_code) as caught:
        get_tool("stripe.create_payment_intent").call(
            {"amount": amount, "currency": "usd"}, context()
        )
    response = json.loads(caught.value.response)
    assert response["status"] == 402
    assert response["body"]["error"]["code"] == "card_declined"


def test_stripe_sandbox_flaky_customer_is_rate_limited():
    with pytest.raises(TransientToolError, match="rate limited") as caught:
        get_tool("stripe.create_payment_intent").call(
            {"amount": 500, "currency": "usd", "customer": "cus_flaky"}, context(attempt=1)
        )
    assert json.loads(caught.value.response)["status"] == 429


def test_stripe_sandbox_refund_is_stripe_shaped():
    output = (
        get_tool("stripe.refund")
        .call({"payment_intent": "pi_3Abc", "reason": "duplicate"}, context())
        .output
    )
    assert output["object"] == "refund"
    assert output["id"].startswith("re_")
    assert output["payment_intent"] == "pi_3Abc"
    assert output["amount"] > 0


# --- Stripe: live through the official SDK against a local fake Stripe ------------------------
PAYMENT_INTENT = {
    "id": "pi_3FakeLive",
    "object": "payment_intent",
    "amount": 12500,
    "currency": "usd",
    "status": "requires_payment_method",
    "metadata": {"invoice_id": "INV-0042"},
}


@pytest.fixture
def stripe_connection(db, server):
    return make_connection("stripe", config={"api_base": server.url})


def call_stripe_live(name, inputs, connection, **kwargs):
    return get_tool(name).call(inputs, context(environment="live", connection=connection, **kwargs))


def test_stripe_live_creates_a_payment_intent_through_the_sdk(server, stripe_connection):
    server.body = PAYMENT_INTENT
    result = call_stripe_live(
        "stripe.create_payment_intent",
        {"amount": 12500, "currency": "USD", "metadata": {"invoice_id": "INV-0042"}},
        stripe_connection,
        key="run_live:pay:1",
    )
    assert server.last["path"] == "/v1/payment_intents"
    assert parse_qs(server.last["body"]) == {
        "amount": ["12500"],
        "currency": ["usd"],
        "metadata[invoice_id]": ["INV-0042"],
    }
    assert result.output == PAYMENT_INTENT
    assert json.loads(result.response) == {"status": 200, "body": PAYMENT_INTENT}


def test_stripe_live_sends_the_idempotency_key(server, stripe_connection):
    server.body = PAYMENT_INTENT
    call_stripe_live(
        "stripe.create_payment_intent",
        {"amount": 12500, "currency": "usd"},
        stripe_connection,
        key="run_live:pay:2",
    )
    assert server.last["headers"]["Idempotency-Key"] == "run_live:pay:2"


def test_stripe_live_never_records_the_secret_key(server, stripe_connection):
    server.body = PAYMENT_INTENT
    result = call_stripe_live(
        "stripe.create_payment_intent", {"amount": 12500, "currency": "usd"}, stripe_connection
    )
    assert server.last["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert_no_secret(result.request, result.response, json.dumps(result.output))
    recorded = json.loads(result.request)
    assert recorded["headers"]["Authorization"] == "[redacted]"
    assert recorded["url"] == server.url + "/v1/payment_intents"
    assert recorded["params"] == {"amount": 12500, "currency": "usd"}


def test_stripe_live_card_error_is_permanent(server, stripe_connection):
    server.status = 402
    server.body = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        }
    }
    with pytest.raises(PermanentToolError, match="insufficient_funds") as caught:
        call_stripe_live(
            "stripe.create_payment_intent", {"amount": 500, "currency": "usd"}, stripe_connection
        )
    assert json.loads(caught.value.response)["status"] == 402
    assert_no_secret(caught.value.request, caught.value.response, caught.value.message)


def test_stripe_live_invalid_request_is_permanent(server, stripe_connection):
    server.status = 400
    server.body = {
        "error": {
            "type": "invalid_request_error",
            "message": f"No such customer: 'cus_x' (key {SECRET})",
        }
    }
    with pytest.raises(PermanentToolError, match="No such customer") as caught:
        call_stripe_live(
            "stripe.create_payment_intent", {"amount": 500, "currency": "usd"}, stripe_connection
        )
    assert_no_secret(caught.value.request, caught.value.response, caught.value.message)


def test_stripe_live_rate_limit_is_transient(server, stripe_connection):
    server.status = 429
    server.body = {"error": {"type": "invalid_request_error", "message": "Too many requests"}}
    with pytest.raises(TransientToolError):
        call_stripe_live("stripe.refund", {"payment_intent": "pi_3Abc"}, stripe_connection)


def test_stripe_live_server_error_is_transient(server, stripe_connection):
    server.status = 500
    server.body = {"error": {"type": "api_error", "message": "Something went wrong"}}
    with pytest.raises(TransientToolError, match="500"):
        call_stripe_live(
            "stripe.create_payment_intent", {"amount": 500, "currency": "usd"}, stripe_connection
        )


def test_stripe_live_unreachable_is_transient(db, closed_port_url):
    connection = make_connection("stripe", config={"api_base": closed_port_url})
    with pytest.raises(TransientToolError, match="could not reach Stripe") as caught:
        call_stripe_live(
            "stripe.create_payment_intent", {"amount": 500, "currency": "usd"}, connection
        )
    assert_no_secret(caught.value.request, caught.value.message)


def test_stripe_live_refund_posts_to_refunds(server, stripe_connection):
    server.body = {"id": "re_1", "object": "refund", "amount": 500, "status": "succeeded"}
    result = call_stripe_live(
        "stripe.refund",
        {"payment_intent": "pi_3Abc", "amount": 500, "reason": "requested_by_customer"},
        stripe_connection,
    )
    assert server.last["path"] == "/v1/refunds"
    assert parse_qs(server.last["body"])["payment_intent"] == ["pi_3Abc"]
    assert result.output["id"] == "re_1"


def test_stripe_connection_without_a_secret_is_permanent(db, server):
    connection = make_connection("stripe", config={"api_base": server.url}, secret="")
    with pytest.raises(PermanentToolError, match="no secret key"):
        call_stripe_live(
            "stripe.create_payment_intent", {"amount": 500, "currency": "usd"}, connection
        )
    assert server.requests == []
