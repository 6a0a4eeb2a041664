"""Webhook endpoints that start runs: POST /hooks/stripe/<trigger id>, /hooks/linear/<trigger id>.

Answers (JSON):
- 202 {"outcome": "started", "run": ...}: a run was started (it executes after this answer);
- 200 {"duplicate": true, "run": ...}: this event was already received (the same signed id or
  the same signed body; unsigned headers such as Linear-Delivery play no part); nothing new
  started;
- 200 {"ignored": ...}: the event type does not start runs of this trigger;
- 200 {"outcome": "invalid_inputs", "detail": ...}: the mapped inputs do not fit the procedure
  (2xx on purpose: redelivering cannot fix it; admins see it on the trigger event);
- 400 {"error": ...}: bad signature, a timestamp too old or too far in the future, or not an
  event; counted in a RejectedDelivery (bounded: see rejections.py) and nothing is started;
  code "bad_request" instead when the body could not be read (nothing is recorded);
- 429 {"error": ...} with Retry-After: the same refusal, once this trigger's rate limit of
  recorded refusals is reached (the delivery is still counted). A correctly signed delivery
  is never refused for this: a flood of bad ones cannot lock out the real sender;
- 404 {"error": ...}: unknown trigger id, a trigger of another kind, or a disabled trigger
  (disabled behaves as absent, so senders stop and nothing about it is revealed);
- 405 {"error": ...}: any method but POST.
"""

from django.http import JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from procedures.models import Trigger, TriggerKind, TriggerOutcome
from runs.triggers import services


def _error(status: int, code: str, message: str, details=None) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )


def _trigger(public_id: str, kind: str) -> Trigger | None:
    return (
        Trigger.objects.select_related("procedure")
        .filter(public_id=public_id, kind=kind, enabled=True)
        .first()
    )


def _answer(receipt: services.Receipt) -> JsonResponse:
    event = receipt.event
    run = receipt.run
    body = {
        "event": event.external_id,
        "outcome": event.outcome,
        "run": run.public_id if run is not None else None,
    }
    if receipt.duplicate:
        return JsonResponse({**body, "duplicate": True}, status=200)
    if event.outcome == TriggerOutcome.STARTED:
        return JsonResponse(body, status=202)
    if event.outcome == TriggerOutcome.IGNORED:
        return JsonResponse({**body, "ignored": event.detail}, status=200)
    return JsonResponse({**body, "detail": event.detail}, status=200)


def _receive(request, public_id: str, kind: str, receive) -> JsonResponse:
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Webhooks are delivered with POST.")
        response["Allow"] = "POST"
        return response
    trigger = _trigger(public_id, kind)
    if trigger is None:
        return _error(404, "not_found", f"No enabled {kind} trigger with id {public_id!r}.")
    try:
        # Read here: a sender that stops mid-body is a 400, not a server error.
        _ = request.body
    except UnreadablePostError as exc:
        return _error(400, "bad_request", f"The body could not be read: {exc}")
    try:
        receipt = receive(trigger, request.META.get("REMOTE_ADDR", ""))
    except services.DeliveryRejected as exc:
        if exc.retry_after is None:
            return _error(400, "delivery_rejected", exc.reason)
        response = _error(
            429,
            "too_many_rejected_deliveries",
            f"{exc.reason} Too many refused deliveries to this trigger: retry later.",
            {"retry_after": exc.retry_after},
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    return _answer(receipt)


@csrf_exempt
def stripe_hook(request, public_id: str):
    return _receive(
        request,
        public_id,
        TriggerKind.STRIPE,
        lambda trigger, remote_addr: services.receive_stripe(
            trigger=trigger,
            body=request.body,
            signature=request.headers.get("Stripe-Signature"),
            remote_addr=remote_addr,
        ),
    )


@csrf_exempt
def linear_hook(request, public_id: str):
    return _receive(
        request,
        public_id,
        TriggerKind.LINEAR,
        lambda trigger, remote_addr: services.receive_linear(
            trigger=trigger,
            body=request.body,
            signature=request.headers.get("Linear-Signature"),
            remote_addr=remote_addr,
        ),
    )
