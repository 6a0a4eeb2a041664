"""Turning outside events into runs: verify the sender, deduplicate, map inputs, start the run.

Deduplication rests on the database: TriggerEvent is unique per (trigger, external_id) and a
run points at its TriggerEvent one-to-one, so a redelivered event (or two deliveries racing)
can never start a second run. The event row and the run are written in one transaction.

Outcomes recorded on the TriggerEvent (TriggerOutcome):
- `started`: a run was started;
- `ignored`: the event type is not one this trigger starts runs for;
- `invalid_inputs`: the input mapping failed or its result does not match the procedure's
  input schema (the detail says why). The sender gets a 2xx all the same: sending the same
  event again cannot fix it, and it stays visible to admins;
- `no_version`: the procedure has no version to run yet.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass

import stripe
from django.db import IntegrityError, transaction

from procedures.expressions import ExpressionError, resolve
from procedures.models import RejectedDelivery, Trigger, TriggerEvent, TriggerOutcome
from runs.api_auth import parse_json_body
from runs.errors import InputValidationError
from runs.models import RunType
from runs.services import start_run

LINEAR_TIMESTAMP_TOLERANCE_SECONDS = 60
LINEAR_DEFAULT_EVENT_TYPES = ["Issue.create"]
BODY_EXCERPT_CHARS = 2000


class DeliveryRejected(Exception):
    """A webhook delivery refused before anything started."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Receipt:
    event: TriggerEvent
    duplicate: bool

    @property
    def run(self):
        return getattr(self.event, "run", None)


def reject(*, trigger: Trigger | None, reason: str, remote_addr: str, body: bytes) -> None:
    """Record a refused delivery for admins and raise DeliveryRejected."""
    RejectedDelivery.objects.create(
        trigger=trigger,
        reason=reason[:300],
        remote_addr=(remote_addr or "")[:64],
        # PostgreSQL text refuses NUL; anyone can send one, so it must not turn into a 500.
        body_excerpt=body[:BODY_EXCERPT_CHARS].decode("utf-8", "replace").replace("\x00", "\ufffd"),
    )
    raise DeliveryRejected(reason)


def _json_object(body: bytes) -> dict | None:
    try:
        payload = parse_json_body(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


# --- Stripe ----------------------------------------------------------------------------------
def receive_stripe(
    *, trigger: Trigger, body: bytes, signature: str | None, remote_addr: str = ""
) -> Receipt:
    """Verify a Stripe webhook with Stripe's SDK (300 s tolerance), then accept the event."""
    if signature and not signature.isascii():
        # The SDK compares str digests, which raises on non-ASCII input instead of failing.
        signature = ""
    try:
        stripe.WebhookSignature.verify_header(
            body,
            signature,
            trigger.get_signing_secret(),
            tolerance=stripe.Webhook.DEFAULT_TOLERANCE,
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        reject(
            trigger=trigger,
            reason=f"Stripe signature rejected: {exc}",
            remote_addr=remote_addr,
            body=body,
        )
    payload = _json_object(body)
    if (
        payload is None
        or not isinstance(payload.get("id"), str)
        or not isinstance(payload.get("type"), str)
    ):
        reject(
            trigger=trigger,
            reason="Not a Stripe event: expected a JSON object with string id and type.",
            remote_addr=remote_addr,
            body=body,
        )
    return accept_event(
        trigger=trigger,
        external_id=payload["id"],
        event_type=payload["type"],
        payload=payload,
        wanted=not trigger.event_types or payload["type"] in trigger.event_types,
    )


# --- Linear ----------------------------------------------------------------------------------
def linear_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _linear_signature_matches(body: bytes, signature: str | None, secret: str) -> bool:
    if not signature or not secret:
        return False
    expected = linear_signature(body, secret)
    return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))


def _linear_timestamp_is_fresh(sent_at_ms, now: float) -> bool:
    return (
        isinstance(sent_at_ms, int | float)
        and not isinstance(sent_at_ms, bool)
        and abs(now * 1000 - sent_at_ms) <= LINEAR_TIMESTAMP_TOLERANCE_SECONDS * 1000
    )


def _linear_external_id(payload: dict, delivery_id: str | None) -> str:
    """The Linear-Delivery header, else webhookId:createdAt; "" when there is neither."""
    external_id = (delivery_id or "").strip()
    if not external_id and payload.get("webhookId") and payload.get("createdAt"):
        external_id = f"{payload['webhookId']}:{payload['createdAt']}"
    return external_id


def receive_linear(
    *,
    trigger: Trigger,
    body: bytes,
    signature: str | None,
    delivery_id: str | None,
    remote_addr: str = "",
    now: float | None = None,
) -> Receipt:
    """Verify a Linear webhook (HMAC-SHA256 of the raw body, timestamp within 60 s), then
    accept the event. Runs start for issue-created events unless the trigger lists others
    as `<type>.<action>`."""
    if not _linear_signature_matches(body, signature, trigger.get_signing_secret()):
        reject(
            trigger=trigger,
            reason="Linear signature rejected: missing or not matching the signing secret.",
            remote_addr=remote_addr,
            body=body,
        )
    payload = _json_object(body)
    if payload is None:
        reject(
            trigger=trigger,
            reason="Not a Linear event: expected a JSON object.",
            remote_addr=remote_addr,
            body=body,
        )
    now = time.time() if now is None else now
    if not _linear_timestamp_is_fresh(payload.get("webhookTimestamp"), now):
        reject(
            trigger=trigger,
            reason="Linear webhookTimestamp missing or more than 60 s away (possible replay).",
            remote_addr=remote_addr,
            body=body,
        )
    external_id = _linear_external_id(payload, delivery_id)
    if not external_id:
        reject(
            trigger=trigger,
            reason="Linear delivery has no Linear-Delivery header nor webhookId and createdAt.",
            remote_addr=remote_addr,
            body=body,
        )
    event_type = f"{payload.get('type', '')}.{payload.get('action', '')}"
    return accept_event(
        trigger=trigger,
        external_id=external_id[:255],
        event_type=event_type[:100],
        payload=payload,
        wanted=event_type in (trigger.event_types or LINEAR_DEFAULT_EVENT_TYPES),
    )


# --- common ----------------------------------------------------------------------------------
def map_inputs(trigger: Trigger, event: dict) -> dict:
    """The run inputs for an event: cron_inputs, overlaid with input_mapping over `event`."""
    inputs = dict(trigger.cron_inputs or {})
    mapped = resolve(trigger.input_mapping or {}, {"event": event})
    if isinstance(mapped, dict):
        inputs.update(mapped)
    return inputs


def accept_event(
    *, trigger: Trigger, external_id: str, event_type: str, payload: dict, wanted: bool
) -> Receipt:
    """Record the event once and, if it is wanted, start its run in the same transaction.

    A repeat of an external id returns the first record (and its run) with duplicate=True.
    """
    existing = _existing(trigger, external_id)
    if existing is not None:
        return Receipt(event=existing, duplicate=True)
    try:
        with transaction.atomic():
            event = TriggerEvent.objects.create(
                trigger=trigger,
                external_id=external_id,
                event_type=event_type,
                payload=payload,
                outcome=TriggerOutcome.STARTED,
            )
            outcome, detail = _start(trigger, event, wanted)
            if outcome != TriggerOutcome.STARTED:
                event.outcome, event.detail = outcome, detail
                event.save(update_fields=["outcome", "detail"])
    except IntegrityError:
        # Someone recorded this external id between our check and our insert.
        existing = _existing(trigger, external_id)
        if existing is None:
            raise
        return Receipt(event=existing, duplicate=True)
    return Receipt(event=event, duplicate=False)


def _existing(trigger: Trigger, external_id: str) -> TriggerEvent | None:
    return (
        TriggerEvent.objects.select_related("run")
        .filter(trigger=trigger, external_id=external_id)
        .first()
    )


def _start(trigger: Trigger, event: TriggerEvent, wanted: bool) -> tuple[TriggerOutcome, str]:
    if not wanted:
        return (
            TriggerOutcome.IGNORED,
            f"Event type {event.event_type!r} does not start runs of this trigger.",
        )
    version = trigger.procedure.current_version
    if version is None:
        return TriggerOutcome.NO_VERSION, f"Procedure {trigger.procedure.name} has no version yet."
    try:
        inputs = map_inputs(trigger, event.payload)
        start_run(
            version=version,
            environment=trigger.environment,
            inputs=inputs,
            type=RunType.TRIGGER,
            trigger=trigger,
            trigger_event=event,
        )
    except ExpressionError as exc:
        return TriggerOutcome.INVALID_INPUTS, f"The input mapping failed: {exc}"
    except InputValidationError as exc:
        return TriggerOutcome.INVALID_INPUTS, exc.message
    return TriggerOutcome.STARTED, ""
