"""Outbound webhooks: signed deliveries of run events to the endpoints configured in admin.

When a run becomes completed, failed, awaiting_review or cancelled, runs.lifecycle calls
`enqueue_deliveries` after the commit; it sends one `deliver_webhook` message (queue
"webhooks") per enabled endpoint of the run's environment subscribed to that event.

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
import json
import time

import httpx
from django.conf import settings
from django.db import connection
from django.urls import reverse

from rapidfolio import ids
from runs.events import append_event
from runs.models import Run, RunStatus, WebhookEndpoint
from runs.tasks import deliver_webhook

EVENT_FOR_STATUS = {
    RunStatus.COMPLETED: WebhookEndpoint.EventType.RUN_COMPLETED,
    RunStatus.FAILED: WebhookEndpoint.EventType.RUN_FAILED,
    RunStatus.AWAITING_REVIEW: WebhookEndpoint.EventType.RUN_AWAITING_REVIEW,
    RunStatus.CANCELLED: WebhookEndpoint.EventType.RUN_CANCELLED,
}
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


# --- enqueueing ------------------------------------------------------------------------------
def run_payload(run: Run, status: str) -> dict:
    data = {
        "id": run.public_id,
        "url": f"{settings.PUBLIC_BASE_URL}{reverse('api:get_run', args=[run.public_id])}",
        "status": status,
        "procedure": {"id": run.procedure.public_id, "name": run.procedure.name},
        "version": run.version.number,
        "environment": run.environment,
    }
    if status == RunStatus.COMPLETED:
        data["output"] = run.output
    if status == RunStatus.FAILED:
        step = run.failed_step
        data["failure"] = {
            "reason": run.failure_reason,
            "kind": run.failure_kind,
            "step": {"sequence": step.sequence, "node_id": step.node_id} if step else None,
        }
    return data


def enqueue_deliveries(*, run_id: int, status: str, environment: str | None = None) -> list[str]:
    """Send one delivery message per subscribed endpoint; returns the delivery ids.

    Called after every terminal or review transition, mostly where no endpoint is configured:
    given the run's environment, one small query settles that before the run is read. It reads
    the table itself each time (no cache), so an endpoint added a moment ago is never missed.
    """
    event_type = EVENT_FOR_STATUS.get(status)
    if event_type is None:
        return []
    if environment is not None and not _any_enabled_endpoint(environment):
        return []
    run = Run.objects.select_related("procedure", "version", "failed_step").get(pk=run_id)
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(
            enabled=True, environment=run.environment
        ).order_by("pk")
        if event_type in (endpoint.events or [])
    ]
    if not endpoints:
        return []
    run_data = run_payload(run, status)
    delivery_ids = []
    for endpoint in endpoints:
        delivery_id = ids.new_public_id("whd")
        body = json.dumps(
            {
                "id": delivery_id,
                "type": str(event_type),
                "created": int(time.time()),
                "data": {"run": run_data},
            },
            separators=(",", ":"),
            default=str,
        )
        deliver_webhook.send(endpoint.pk, run.pk, delivery_id, str(event_type), body, 1)
        delivery_ids.append(delivery_id)
    return delivery_ids


def _any_enabled_endpoint(environment: str) -> bool:
    # Plain SQL: this runs once per finished run, and the ORM's compilation would cost more
    # than the query.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {WebhookEndpoint._meta.db_table} "
            "WHERE enabled AND environment = %s LIMIT 1",
            [environment],
        )
        return cursor.fetchone() is not None


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
        append_event(
            run,
            "webhook.delivery",
            actor="system:webhooks",
            data={**record, "ok": False, "error": "endpoint removed or disabled; not sent"},
        )
        return False
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
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    ok = status_code is not None and 200 <= status_code < 300
    will_retry = not ok and attempt < max_attempts()
    data = {
        **record,
        "ok": ok,
        "status_code": status_code,
        "error": error,
        "duration_ms": duration_ms,
        "response": snippet,
    }
    if will_retry:
        data["next_attempt_in_seconds"] = backoff_seconds(attempt)
    append_event(run, "webhook.delivery", actor="system:webhooks", data=data)
    if will_retry:
        deliver_webhook.send_with_options(
            args=(endpoint_id, run_id, delivery_id, event_type, body, attempt + 1),
            delay=int(backoff_seconds(attempt) * 1000),
        )
    return ok
