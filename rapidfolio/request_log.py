"""One log line per request (logger `rapidfolio.request`): method, path, status, duration, the
signed-in user or the API key's prefix, the client's address and the request's id.

The id is the one the client or a proxy sent in X-Request-ID when it is well-formed, so a
request can be followed from the load balancer into the app, else a new one. It is on every line
logged while the request is answered (rapidfolio.log_context) and is sent back in the answer's
X-Request-ID, for a user or a support ticket to quote.

A client's error is INFO: a 404 or a 422 is the product answering as documented, not something
for on-call. A 5xx is ERROR, with the traceback when an exception caused it. Django's own lines
about the request (django.request's "Not Found: /x" WARNING, the 500's traceback, django.
security's CSRF and bad-Host refusals) are folded into this one, their text as `detail`, rather
than written as a second line in another format (log_context.OneLinePerRequest).

The path is logged without its query string, where tokens and personal data travel. This is the
outermost middleware: its duration covers all the others, its status is the one sent.
"""

import logging
import re
import time
import uuid
from urllib.parse import quote

from django.utils.functional import SimpleLazyObject, empty

from rapidfolio import log_context
from rapidfolio.login_lockout import client_ip

logger = logging.getLogger("rapidfolio.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A UUID, a ULID, nginx's $request_id, a trace id: letters, digits and a few separators. No
# spaces or control characters, which could forge a line of the plain format.
WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]{0,127}")
# Probes ask every few seconds: their ordinary answers are DEBUG, their failures are not.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# The public ids in a URL name what the request is about (rapidfolio.ids): runs, procedures,
# reviews, triggers.
PUBLIC_ID = re.compile(r"(run|proc|rev|trg)_[0-9a-z]{8,40}")
PUBLIC_ID_FIELDS = {"run": "run", "proc": "procedure", "rev": "review", "trg": "trigger"}
# How a path is written: as it travels on the wire, so it is always printable.
PATH_SAFE_CHARACTERS = "/:@!$&'()*+,;=-._~"


def request_id_for(sent: str | None) -> str:
    if sent and WELL_FORMED_REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        with log_context.bind(request_id=request_id):
            with log_context.collect_django_reports() as reported:
                response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            # Django logs every 4xx and 5xx answer again once the middleware chain has
            # returned (django.utils.log.log_response) unless it is marked as logged: this
            # line is its log.
            response._has_been_logged = True
            level = _level(request, response)
            if logger.isEnabledFor(level):  # who asked, and the line, only when it is written
                log_context.add(**_who(request))
                _log(request, response, level, reported, time.perf_counter() - started)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        log_context.add(**named_objects(view_kwargs))


def named_objects(view_kwargs: dict) -> dict[str, str]:
    """{"run": "run_…"} for /runs/run_…/, and so on for the other kinds of public id."""
    named = {}
    for value in view_kwargs.values():
        if isinstance(value, str) and PUBLIC_ID.fullmatch(value):
            named[PUBLIC_ID_FIELDS[value.partition("_")[0]]] = value
    return named


def _who(request) -> dict[str, str | None]:
    who = {"client_ip": client_ip(request)}
    if prefix := getattr(getattr(request, "auth", None), "prefix", None):
        who["api_key"] = prefix  # django-ninja's request.auth: the ApiKey the API accepted
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        # The user the view saw: never load a session only to write this line (a request
        # that did not look, a static file or a probe, is logged without one).
        user = None if user._wrapped is empty else user._wrapped
    if user is not None and user.is_authenticated:
        who["user"] = user.get_username()
    return who


def _level(request, response) -> int:
    status = response.status_code
    if status >= 500:
        return logging.ERROR
    if status < 400 and request.path in PROBE_PATHS:
        return logging.DEBUG
    return logging.INFO


def _log(request, response, level: int, reported: log_context.DjangoReport, seconds: float):
    status = response.status_code
    path = quote(request.path, safe=PATH_SAFE_CHARACTERS)
    duration_ms = round(seconds * 1000, 1)
    extra = {"method": request.method, "path": path, "status": status, "duration_ms": duration_ms}
    if reported.detail:
        extra["detail"] = reported.detail
    logger.log(
        level,
        "%s %s %s %.0fms",
        request.method,
        path,
        status,
        duration_ms,
        extra=extra,
        exc_info=reported.exc_info,
    )
