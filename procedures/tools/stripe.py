"""Stripe: `stripe.create_payment_intent` and `stripe.refund`.

With a Connection for the "stripe" integration (required in live, optional in sandbox) the call goes
through Stripe's official SDK (`StripeClient` with the connection's secret key, the run's
idempotency key, no SDK-level retries: the engine retries). `connection.config["api_base"]`
overrides https://api.stripe.com, e.g. for a local fake in tests.

Stripe bodies are form-encoded, so the recorded request is JSON describing the call:

    {"method": "POST", "url": "https://api.stripe.com/v1/payment_intents",
     "headers": {"Authorization": "[redacted]", "Idempotency-Key": "...", "Stripe-Version": "..."},
     "params": {<the parameters given to the SDK>}}

and the recorded response is `{"status": <HTTP status>, "body": <Stripe's JSON exactly as
received>}`. The output is Stripe's object (parsed JSON). Errors: card errors, invalid requests,
authentication and permission errors are permanent; rate limits, network errors, timeouts and
5xx are transient.

In sandbox without a connection a deterministic simulator answers with Stripe-shaped objects
(`"simulated": true` and a path in the recorded request). Simulated failures:
- create_payment_intent amount 400002: card_declined / generic_decline (permanent), amount
  409995: card_declined / insufficient_funds (permanent), like Stripe's test cards;
- a customer (payment intent) containing "flaky": 429 rate limited on attempts 1-2, then success;
  "timeout": no answer on every attempt (transient); "blocked": permanent (fraudulent decline;
  for refunds, charge already refunded).
"""

import json
from abc import ABC, abstractmethod
from functools import cache
from typing import Any

import stripe
from django.conf import settings
from stripe._api_version import _ApiVersion

from procedures.tools import register
from procedures.tools.base import (
    PermanentToolError,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    TransientToolError,
)
from procedures.tools.support import (
    REDACTED,
    check_inputs,
    created_timestamp,
    digest,
    dumps,
    number_from,
    redact,
    simulated_failure,
    simulated_response,
)

DECLINES = {
    400002: ("generic_decline", "Your card was declined."),
    409995: ("insufficient_funds", "Your card has insufficient funds."),
}
STRIPE_AMOUNT = {
    "type": "integer",
    "minimum": 1,
    "maximum": 99_999_999,
    "description": "Amount in the currency's minor unit (cents).",
}
METADATA = {
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {"maxLength": 40},
    "additionalProperties": {"type": "string", "maxLength": 500},
}
RATE_LIMITED = (
    "Stripe rate limited the request",
    {
        "error": {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": "Too many requests hit the API too quickly.",
        }
    },
)


class StripeTool(Tool, ABC):
    integration = "stripe"
    method = "POST"

    @abstractmethod
    def path(self, inputs: dict) -> str: ...

    def params(self, inputs: dict) -> dict:
        return dict(inputs)

    @abstractmethod
    def send(self, client: stripe.StripeClient, params: dict, options: dict) -> Any: ...

    @abstractmethod
    def simulate(self, params: dict, context: ToolContext, request: str) -> dict: ...

    def call(self, inputs: dict, context: ToolContext) -> ToolResult:
        check_inputs(self.input_schema, inputs)
        params = self.params(inputs)
        if context.connection is not None:
            return self._call_stripe(params, context)
        if context.environment == "live":
            raise PermanentToolError("no live connection configured for stripe")
        request = dumps(
            {
                "simulated": True,
                "method": self.method,
                "path": self.path(inputs),
                "headers": {"Idempotency-Key": context.idempotency_key},
                "params": params,
            }
        )
        output = self.simulate(params, context, request)
        return ToolResult(output=output, request=request, response=simulated_response(output))

    def _call_stripe(self, params: dict, context: ToolContext) -> ToolResult:
        secret = context.connection.get_secret()
        if not secret:
            raise PermanentToolError("the stripe connection has no secret key")
        api_base = (context.connection.config or {}).get("api_base") or stripe.DEFAULT_API_BASE
        api_base = api_base.rstrip("/")
        request = dumps(
            {
                "method": self.method,
                "url": api_base + self.path(params),
                "headers": {
                    "Authorization": REDACTED,
                    "Idempotency-Key": context.idempotency_key,
                    "Stripe-Version": _ApiVersion.CURRENT,
                },
                "params": params,
            }
        )
        request = redact(request, secret)
        client = stripe.StripeClient(
            secret,
            base_addresses={"api": api_base},
            max_network_retries=0,
            http_client=_http_client(settings.TOOL_HTTP_TIMEOUT_SECONDS),
        )
        try:
            result = self.send(client, params, {"idempotency_key": context.idempotency_key})
        except stripe.StripeError as exc:
            raise _tool_error(exc, request, secret) from None
        received = result.last_response
        body = redact(received.body, secret)
        response = _response_text(received.code, body)
        return ToolResult(output=json.loads(body), request=request, response=response)


@cache
def _http_client(timeout: float) -> stripe.HTTPXClient:
    # One pooled client per process (per timeout); the SDK's default would open one per call.
    return stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True)


def _response_text(status: int | None, body: str | None) -> str:
    if not body:
        body_text = "null"
    else:
        try:
            json.loads(body)
            body_text = body
        except ValueError:
            body_text = dumps(body)
    return '{"status": ' + dumps(status) + ', "body": ' + body_text + "}"


def _tool_error(exc: stripe.StripeError, request: str, secret: str) -> ToolError:
    if isinstance(exc, stripe.APIConnectionError):
        return TransientToolError(
            "could not reach Stripe (network error or timeout)", request=request
        )
    error = exc.error
    detail = (getattr(error, "message", None) or exc.user_message or "no message").strip()
    codes = [c for c in (exc.code, getattr(error, "decline_code", None)) if c]
    message = f"Stripe answered {exc.http_status}: {detail}"
    if codes:
        message += f" ({' / '.join(codes)})"
    message = redact(message, secret)
    response = redact(_response_text(exc.http_status, exc.http_body), secret)
    transient = (
        isinstance(exc, (stripe.RateLimitError, stripe.APIError)) or (exc.http_status or 0) >= 500
    )
    error_class = TransientToolError if transient else PermanentToolError
    return error_class(message, request=request, response=response)


def _stripe_error(error_type: str, code: str, message: str, **extra) -> dict:
    return {"error": {"type": error_type, "code": code, "message": message, **extra}}


@register
class CreatePaymentIntent(StripeTool):
    name = "stripe.create_payment_intent"
    description = (
        "Create (and by default confirm) a Stripe PaymentIntent; amount in minor units. Sandbox "
        "simulator: amount 400002 is declined (generic_decline) and 409995 declined "
        "(insufficient_funds), permanently; a customer containing 'flaky' is rate limited "
        "(transient) on attempts 1-2, 'timeout' never answers (transient), 'blocked' is declined "
        "as fraudulent (permanent)."
    )
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["amount", "currency"],
        "properties": {
            "amount": STRIPE_AMOUNT,
            "currency": {
                "type": "string",
                "pattern": "^[A-Za-z]{3}$",
                "description": "ISO 4217 code; sent lower-case as Stripe expects.",
            },
            "customer": {"type": "string", "minLength": 1, "maxLength": 255},
            "payment_method": {"type": "string", "minLength": 1, "maxLength": 255},
            "confirm": {"type": "boolean"},
            "description": {"type": "string", "maxLength": 1000},
            "receipt_email": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$"},
            "metadata": METADATA,
        },
    }

    def path(self, inputs: dict) -> str:
        return "/v1/payment_intents"

    def params(self, inputs: dict) -> dict:
        return {**inputs, "currency": inputs["currency"].lower()}

    def send(self, client, params, options):
        return client.v1.payment_intents.create(params=params, options=options)

    def simulate(self, params: dict, context: ToolContext, request: str) -> dict:
        simulated_failure(
            params.get("customer"),
            context,
            request=request,
            transient=RATE_LIMITED,
            transient_status=429,
            permanent=(
                "Stripe declined the card as fraudulent",
                _stripe_error(
                    "card_error",
                    "card_declined",
                    "Your card was declined.",
                    decline_code="fraudulent",
                ),
            ),
            permanent_status=402,
        )
        if params["amount"] in DECLINES:
            decline_code, text = DECLINES[params["amount"]]
            body = _stripe_error("card_error", "card_declined", text, decline_code=decline_code)
            raise PermanentToolError(
                f"Stripe answered 402: {text} (card_declined / {decline_code})",
                request=request,
                response=simulated_response(body, 402),
            )
        key_hash = digest(context.idempotency_key)
        return {
            "id": "pi_" + key_hash[:24],
            "object": "payment_intent",
            "amount": params["amount"],
            "amount_received": params["amount"],
            "currency": params["currency"],
            "customer": params.get("customer"),
            "description": params.get("description"),
            "payment_method": params.get("payment_method", "pm_card_visa"),
            "payment_method_types": ["card"],
            "capture_method": "automatic",
            "latest_charge": "ch_" + key_hash[24:48],
            "receipt_email": params.get("receipt_email"),
            "metadata": params.get("metadata", {}),
            "status": "succeeded",
            "livemode": False,
            "created": created_timestamp(context),
        }


@register
class Refund(StripeTool):
    name = "stripe.refund"
    description = (
        "Refund a Stripe PaymentIntent, fully or partly (amount in minor units). Sandbox "
        "simulator: a payment_intent containing 'flaky' is rate limited (transient) on attempts "
        "1-2, 'timeout' never answers (transient), 'blocked' is already refunded (permanent); "
        "without an amount the refund is for a stable simulated charge amount."
    )
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["payment_intent"],
        "properties": {
            "payment_intent": {"type": "string", "pattern": "^pi_[A-Za-z0-9_]+$"},
            "amount": STRIPE_AMOUNT,
            "reason": {"enum": ["duplicate", "fraudulent", "requested_by_customer"]},
            "metadata": METADATA,
        },
    }

    def path(self, inputs: dict) -> str:
        return "/v1/refunds"

    def send(self, client, params, options):
        return client.v1.refunds.create(params=params, options=options)

    def simulate(self, params: dict, context: ToolContext, request: str) -> dict:
        payment_intent = params["payment_intent"]
        simulated_failure(
            payment_intent,
            context,
            request=request,
            transient=RATE_LIMITED,
            transient_status=429,
            permanent=(
                f"Stripe refused the refund: {payment_intent} has already been refunded",
                _stripe_error(
                    "invalid_request_error",
                    "charge_already_refunded",
                    f"Charge for {payment_intent} has already been refunded.",
                ),
            ),
        )
        amount = params.get("amount") or number_from(
            "charge", payment_intent, low=100, high=500_000
        )
        return {
            "id": "re_" + digest(context.idempotency_key)[:24],
            "object": "refund",
            "amount": amount,
            "currency": "usd",
            "payment_intent": payment_intent,
            "charge": "ch_" + digest(payment_intent)[:24],
            "reason": params.get("reason"),
            "metadata": params.get("metadata", {}),
            "status": "succeeded",
            "created": created_timestamp(context),
        }
