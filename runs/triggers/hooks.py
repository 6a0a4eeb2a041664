"""Webhook endpoints that start runs: POST /hooks/stripe/<trigger id>, /hooks/linear/<trigger id>.

Answers (JSON):
- 202 {"outcome": "started", "run": ...}: a run was started (it executes after this answer);
- 200 {"duplicate": true, "run": ...}: this event was already received; nothing new started;
- 200 {"ignored": ...}: the event type does not start runs of this trigger;
- 200 {"outcome": "invalid_inputs", "detail": ...}: the mapped inputs do not fit the procedure
  (2xx on purpose: redelivering cannot fix it; admins see it on the trigger event);
- 400 {"error": ...}: bad signature, stale timestamp or not an event; recorded as a
  RejectedDelivery and nothing is started;
- 404 {"error": ...}: unknown trigger id, a trigger of another kind, or a disabled trigger
  (disabled behaves as absent, so senders stop and nothing about it is revealed);
- 405 {"error": ...}: any method but POST.
"""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from procedures.models import Trigger, TriggerKind, TriggerOutcome
from runs.triggers import services


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": None}}, status=status
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
        receipt = receive(trigger, request.META.get("REMOTE_ADDR", ""))
    except services.DeliveryRejected as exc:
        return _error(400, "delivery_rejected", exc.reason)
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
            delivery_id=request.headers.get("Linear-Delivery"),
            remote_addr=remote_addr,
        ),
    )
