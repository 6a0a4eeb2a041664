"""The demo's webhook receiver, POST /hooks/demo-receiver/: `manage.py seed_demo` points its
outbound webhook endpoint here, so the demo's deliveries succeed without leaving the machine
(a dead address would fail every delivery WEBHOOK_MAX_ATTEMPTS times, each a run event).

It does what a customer's receiver should (runs/webhooks.py explains the signature): check the
Rapidfolio-Signature over the raw body, in constant time and within the timestamp tolerance,
with the secret of an enabled endpoint configured at this address, and answer at once. It keeps
nothing. 204 for such a delivery; 401 for anything else (nothing is revealed about which
endpoints exist); 405 for any method but POST.
"""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from runs.models import WebhookEndpoint
from runs.webhooks import SIGNATURE_HEADER, verify_signature


@csrf_exempt  # signed by the sender instead: there is no session to forge a request from
@require_POST
def receive(request):
    header = request.headers.get(SIGNATURE_HEADER)
    endpoints = WebhookEndpoint.objects.filter(enabled=True, url__endswith=request.path)
    if header and any(
        verify_signature(request.body, header, endpoint.get_secret()) for endpoint in endpoints
    ):
        return HttpResponse(status=204)
    return JsonResponse(
        {
            "error": {
                "code": "bad_signature",
                "message": "Not a delivery signed by a webhook endpoint of this address.",
                "details": None,
            }
        },
        status=401,
    )
