"""Outbound webhooks: signed deliveries of run events to the endpoints configured in admin.

When a run becomes completed, failed, awaiting_review or cancelled, the write path has
runs.dispatch call `enqueue_deliveries` after the commit; it sends one `deliver_webhook`
message (queue "webhooks") per enabled endpoint of the run's environment subscribed to that
event, and `deliver` (below) makes each attempt.

Each delivery is a POST of JSON:

    {"id": "whd_…", "type": "run.completed", "created": 1767225600,
     "data": {"run": {"id", "url", "status", "procedure", "version", "environment",
                      "output" (completed) | "failure" (failed)}}}

with headers `Rapidfolio-Delivery: <id>`, `Rapidfolio-Event: <type>` and

    Rapidfolio-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver verifies it by recomputing the HMAC over the timestamp, a dot and the raw body
bytes exactly as received, comparing in constant time, and refusing timestamps older than a
few minutes (see `verify_signature`). The `id` stays the same across retries: use it to ignore
a delivery already processed.

Any answer but 2xx, or no answer within WEBHOOK_TIMEOUT_SECONDS, is retried with exponential
backoff (WEBHOOK_RETRY_BASE_SECONDS × 2^(attempt-1): 1 s, 2 s, 4 s … by default) up to
WEBHOOK_MAX_ATTEMPTS attempts. Every attempt is recorded on the run as a `webhook.delivery`
event: attempt, status code or error, duration, the first 500 characters of the response.
"""

import hashlib
import hmac
import time

import httpx
from django.conf import settings

from runs import dispatch, metrics
from runs.models import Run, WebhookEndpoint
from runs.writer import append_event

WEBHOOKS_ACTOR = "system:webhooks"
SIGNATURE_HEADER = "Rapidfolio-Signature"
RESPONSE_SNIPPET_CHARS = 500
DEFAULT_TOLERANCE_SECONDS = 300


def retry_base_seconds() -> float:
    return float(getattr(settings, "WEBHOOK_RETRY_BASE_SECONDS", 1.0))


def max_attempts() -> int:
    return int(getattr(settings, "WEBHOOK_MAX_ATTEMPTS", 8))


def timeout_seconds() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", 10.0))


# --- signing ---------------------------------------------------------------------------------
def _mac(secret: str, timestamp: int, body: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def sign(body: str, secret: str, timestamp: int | None = None) -> str:
    """The Rapidfolio-Signature header value for `body`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    payload: bytes | str,
    header: str | None,
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """What a receiver does: True when `header` signs `payload` (the raw body) with `secret`
    and its timestamp is within `tolerance` seconds of now."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            return False
    if not header or not secret:
        return False
    parts = [item.split("=", 1) for item in header.split(",")]
    fields = [(p[0].strip(), p[1].strip()) for p in parts if len(p) == 2]
    try:
        timestamp = int(next(value for name, value in fields if name == "t"))
    except (StopIteration, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, payload)
    return any(
        hmac.compare_digest(expected.encode(), value.encode("utf-8", "replace"))
        for name, value in fields
        if name == "v1"
    )


# --- delivering ------------------------------------------------------------------------------
def backoff_seconds(attempt: int) -> float:
    """Delay before attempt `attempt + 1`."""
    return retry_base_seconds() * 2 ** (attempt - 1)


def deliver(
    *, endpoint_id: int, run_id: int, delivery_id: str, event_type: str, body: str, attempt: int
) -> bool:
    """POST one attempt, record it on the run, and schedule the next attempt if it failed."""
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
    run = Run.objects.only("pk", "public_id").get(pk=run_id)
    record = {
        "delivery": delivery_id,
        "event": event_type,
        "endpoint": endpoint.url if endpoint else None,
        "attempt": attempt,
    }
    if endpoint is None or not endpoint.enabled:
        data = {**record, "ok": False, "error": "endpoint removed or disabled; not sent"}
        append_event(run, "webhook.delivery", actor=WEBHOOKS_ACTOR, data=data)
        metrics.webhook_attempted("skipped")
        return False
    result = _post(endpoint, delivery_id, event_type, body)
    will_retry = not result["ok"] and attempt < max_attempts()
    data = {**record, **result}
    if will_retry:
        data["next_attempt_in_seconds"] = backoff_seconds(attempt)
    append_event(run, "webhook.delivery", actor=WEBHOOKS_ACTOR, data=data)
    metrics.webhook_attempted(
        "delivered" if result["ok"] else "retrying" if will_retry else "failed"
    )
    if will_retry:
        dispatch.send_delivery(
            endpoint_id,
            run_id,
            delivery_id,
            event_type,
            body,
            attempt=attempt + 1,
            delay_ms=int(backoff_seconds(attempt) * 1000),
        )
    return result["ok"]


def _post(endpoint: WebhookEndpoint, delivery_id: str, event_type: str, body: str) -> dict:
    """One signed POST: whether it succeeded, its status or error, duration and answer."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Rapidfolio-Webhooks/1",
        "Rapidfolio-Delivery": delivery_id,
        "Rapidfolio-Event": event_type,
        SIGNATURE_HEADER: sign(body, endpoint.get_secret()),
    }
    started = time.monotonic()
    status_code = None
    error = ""
    snippet = ""
    try:
        response = httpx.post(
            endpoint.url,
            content=body.encode(),
            headers=headers,
            timeout=timeout_seconds(),
            follow_redirects=False,
        )
        status_code = response.status_code
        snippet = response.text[:RESPONSE_SNIPPET_CHARS]
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:RESPONSE_SNIPPET_CHARS]
    return {
        "ok": status_code is not None and 200 <= status_code < 300,
        "status_code": status_code,
        "error": error,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "response": snippet,
    }
