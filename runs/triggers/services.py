"""Turning outside events into runs: verify the sender, deduplicate, map inputs, start the run.

Deduplication rests on the database and on what the sender signed. TriggerEvent is unique per
(trigger, external_id), and for a webhook also per (trigger, SHA-256 of the signed body); a run
points at its TriggerEvent one-to-one, so a redelivered event (or two deliveries racing) can
never start a second run. The event row and the run are written in one transaction.

Both keys come from the signed body, never from a header the signature does not cover (such as
Linear-Delivery): otherwise a captured delivery replayed within the timestamp tolerance with a
fresh header would start a run each time. The external id is the event's own signed id (Stripe's
`id`; for Linear its webhookId, createdAt, type, action and data.id), so a genuine redelivery
that the sender re-stamped is still recognised; the body digest is the general rule that holds
for every HMAC trigger, whatever ids its payload has. accept_event requires the signed body of
a webhook (cron, which nobody signs, passes None).

Timestamps are checked both ways: Stripe's SDK refuses only the past (beyond its 300 s
tolerance), so a `t=` further than STRIPE_CLOCK_SKEW_SECONDS in the future is refused here;
Linear's webhookTimestamp must be within 60 s either way.

Refused deliveries are recorded, bounded, by rejections.py.

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
from django.db.models import Q

from procedures.expressions import ExpressionError, resolve
from procedures.models import Trigger, TriggerEvent, TriggerOutcome
from runs.api_auth import parse_json_body
from runs.errors import InputValidationError
from runs.models import RunType
from runs.services import start_run
from runs.triggers.rejections import record_rejection

LINEAR_TIMESTAMP_TOLERANCE_SECONDS = 60
LINEAR_DEFAULT_EVENT_TYPES = ["Issue.create"]
# How far ahead of our clock a Stripe signature timestamp may be (their clock, or ours, drifts).
STRIPE_CLOCK_SKEW_SECONDS = 300
EXTERNAL_ID_MAX_LENGTH = 255


class DeliveryRejected(Exception):
    """A webhook delivery refused before anything started.

    retry_after is set when the trigger's rate limit of recorded refusals was reached.
    """

    def __init__(self, reason: str, retry_after: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Receipt:
    event: TriggerEvent
    duplicate: bool

    @property
    def run(self):
        return getattr(self.event, "run", None)


def reject(*, trigger: Trigger | None, reason: str, remote_addr: str, body: bytes) -> None:
    """Record a refused delivery for admins (bounded) and raise DeliveryRejected."""
    retry_after = record_rejection(
        trigger=trigger, reason=reason, remote_addr=remote_addr, body=body
    )
    raise DeliveryRejected(reason, retry_after=retry_after)


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
    """Verify a Stripe webhook with Stripe's SDK (300 s tolerance in the past, and here
    STRIPE_CLOCK_SKEW_SECONDS in the future), then accept the event."""
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
    if _stripe_signed_at(signature) > time.time() + STRIPE_CLOCK_SKEW_SECONDS:
        reject(
            trigger=trigger,
            reason=(
                "Stripe signature timestamp is more than "
                f"{STRIPE_CLOCK_SKEW_SECONDS} s in the future (possible replay)."
            ),
            remote_addr=remote_addr,
            body=body,
        )
    payload = _json_object(body)
    if (
        payload is None
        or not isinstance(payload.get("id"), str)
        or not isinstance(payload.get("type"), str)
        or len(payload["id"]) > EXTERNAL_ID_MAX_LENGTH
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
        signed_body=body,
    )


def _stripe_signed_at(signature: str) -> int:
    """The signed `t=` of a header the SDK accepted, read as the SDK reads it (the first t)."""
    items = [item.split("=", 2) for item in signature.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


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


def linear_external_id(payload: dict, body: bytes) -> str:
    """The event's own signed ids, `webhookId:createdAt:type.action:data.id`, which a re-stamped
    redelivery keeps; the signed body's digest when there is no webhookId and createdAt.

    Never the Linear-Delivery header: the signature does not cover it.
    """
    webhook_id, created_at = payload.get("webhookId"), payload.get("createdAt")
    if not (isinstance(webhook_id, str) and webhook_id and isinstance(created_at, str)):
        return "sha256:" + hashlib.sha256(body).hexdigest()
    data = payload.get("data")
    data_id = data.get("id") if isinstance(data, dict) else None
    key = ":".join(
        [
            webhook_id,
            created_at,
            f"{payload.get('type', '')}.{payload.get('action', '')}",
            "" if data_id is None else str(data_id),
        ]
    )
    if len(key) > EXTERNAL_ID_MAX_LENGTH:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def receive_linear(
    *,
    trigger: Trigger,
    body: bytes,
    signature: str | None,
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
    event_type = f"{payload.get('type', '')}.{payload.get('action', '')}"
    return accept_event(
        trigger=trigger,
        external_id=linear_external_id(payload, body),
        event_type=event_type[:100],
        payload=payload,
        wanted=event_type in (trigger.event_types or LINEAR_DEFAULT_EVENT_TYPES),
        signed_body=body,
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
    *,
    trigger: Trigger,
    external_id: str,
    event_type: str,
    payload: dict,
    wanted: bool,
    signed_body: bytes | None,
) -> Receipt:
    """Record the event once and, if it is wanted, start its run in the same transaction.

    `signed_body` is the exact body a webhook's signature covers (None only for what nobody
    signs: cron firings). A repeat of the external id, or of the signed body, returns the
    first record (and its run) with duplicate=True.
    """
    body_sha256 = hashlib.sha256(signed_body).hexdigest() if signed_body is not None else ""
    existing = _existing(trigger, external_id, body_sha256)
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
                signed_body_sha256=body_sha256,
            )
            outcome, detail = _start(trigger, event, wanted)
            if outcome != TriggerOutcome.STARTED:
                event.outcome, event.detail = outcome, detail
                event.save(update_fields=["outcome", "detail"])
    except IntegrityError:
        # Someone recorded this event between our check and our insert.
        existing = _existing(trigger, external_id, body_sha256)
        if existing is None:
            raise
        return Receipt(event=existing, duplicate=True)
    return Receipt(event=event, duplicate=False)


def _existing(trigger: Trigger, external_id: str, body_sha256: str) -> TriggerEvent | None:
    same = Q(external_id=external_id)
    if body_sha256:
        same |= Q(signed_body_sha256=body_sha256)
    return (
        TriggerEvent.objects.select_related("run")
        .filter(same, trigger=trigger)
        .order_by("received_at", "pk")
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
