"""One JSON-over-HTTP call with httpx, recorded exactly and classified for retries.

Recorded request text (what the run's step log shows):

    {"method": "POST", "url": "https://bank.example/wires",
     "headers": {<every header sent, credentials shown as "[redacted]">},
     "body": <the JSON body exactly as sent, or null>}

Recorded response text:

    {"status": 200, "body": <the body exactly as received when it is JSON, else a JSON string>}

The body bytes are serialised once, sent, and spliced verbatim into the record, so the record is
exactly what went over the wire. Every request carries `Idempotency-Key`, and a connection secret
travels as a bearer token that is never written anywhere.

Classification: 5xx, 429, timeouts and network errors are transient; every other status from 300
up (a redirect included: a payment call is never silently re-sent elsewhere) is permanent.
"""

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from procedures.tools.base import PermanentToolError, ToolContext, TransientToolError
from procedures.tools.support import dumps, redact, redact_headers

NO_BODY = object()
ERROR_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class HttpExchange:
    status: int
    body: Any  # parsed JSON, or the text when the body is not JSON
    request: str
    response: str


def send_json(
    method: str,
    url: str,
    *,
    context: ToolContext,
    body: Any = NO_BODY,
    headers: dict[str, str] | None = None,
    secret: str = "",
    timeout: float | None = None,
) -> HttpExchange:
    """Send one request; return the exchange for a 1xx/2xx answer, raise a ToolError otherwise."""
    timeout = settings.TOOL_HTTP_TIMEOUT_SECONDS if timeout is None else timeout
    body_text = "null" if body is NO_BODY else dumps(body)
    sent_headers = {"Accept": "application/json", **(headers or {})}
    if body is not NO_BODY:
        sent_headers["Content-Type"] = "application/json"
    sent_headers["Idempotency-Key"] = context.idempotency_key
    if secret:
        sent_headers["Authorization"] = f"Bearer {secret}"

    host = urlsplit(url).netloc or url
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        try:
            request = client.build_request(
                method,
                url,
                headers=sent_headers,
                content=None if body is NO_BODY else body_text.encode(),
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PermanentToolError(f"the URL {url!r} cannot be called: {exc}") from exc
        request_text = redact(_request_record(request, body_text), secret)
        try:
            response = client.send(request)
        except httpx.TimeoutException as exc:
            raise TransientToolError(
                f"no answer from {host} within {timeout:g} seconds", request=request_text
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise PermanentToolError(
                f"the URL {url!r} cannot be called: {exc}", request=request_text
            ) from exc
        except httpx.TransportError as exc:
            message = redact(f"could not reach {host}: {exc}", secret)
            raise TransientToolError(message, request=request_text) from exc

    # Redacted before parsing, so an echoed secret reaches neither the record nor the output.
    parsed, response_text = _response_record(response.status_code, redact(response.text, secret))
    status = response.status_code
    if status >= 300:
        excerpt = redact(response.text[:ERROR_EXCERPT_CHARS], secret)
        message = f"{host} answered HTTP {status}" + (f": {excerpt}" if excerpt else "")
        if status >= 500 or status == 429:
            raise TransientToolError(message, request=request_text, response=response_text)
        raise PermanentToolError(message, request=request_text, response=response_text)
    return HttpExchange(status=status, body=parsed, request=request_text, response=response_text)


def _request_record(request: httpx.Request, body_text: str) -> str:
    headers = {
        name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw
    }
    head = dumps({"method": request.method, "url": str(request.url)})
    return (
        head[:-1]
        + ', "headers": '
        + dumps(redact_headers(headers))
        + ', "body": '
        + body_text
        + "}"
    )


def _response_record(status: int, text: str) -> tuple[Any, str]:
    if not text.strip():
        parsed, body_text = None, "null"
    else:
        try:
            parsed, body_text = json.loads(text, parse_constant=_refuse_constant), text
        except ValueError:
            parsed, body_text = text, dumps(text)
    return parsed, '{"status": ' + str(status) + ', "body": ' + body_text + "}"


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON; such a body is recorded as text instead.
    raise ValueError(name)
