"""Every error on the API's paths (/v1/ and /hooks/) is JSON:
`{"error": {"code": "...", "message": "...", "details": ...}}`, whatever produced it.

The API's own refusals are JSON where they are raised (rapidfolio/api.py's exception handlers,
runs/triggers/hooks.py). This middleware, the outermost, covers what never reaches them:

- The body's framing, checked before anything reads the body. A Content-Length above
  DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 (Django would raise RequestDataTooBig when the view
  reads it, and answer an HTML 400). A chunked body (Transfer-Encoding, no Content-Length) is
  read here, up to the same limit: Django reads exactly Content-Length bytes, so without this
  it would see an empty body. Only a server that decodes the chunks can hand it over
  (gunicorn does, and says so with `wsgi.input_terminated`); Django's development server
  cannot, so there it is a 411 asking for a Content-Length. Both headers at once is a 400: it
  is how requests are smuggled past proxies that read the other one.
- Any other error answer that is not JSON (Django's 404 for an unknown path or 400 for a bad
  Host, the 500 of an unhandled exception, which Django has logged with its traceback before it
  gets here) is answered as the envelope, with the same status and headers.

It imports no app: the paths are the ones rapidfolio/urls.py mounts the API and webhooks at.
"""

from http import HTTPStatus
from io import BytesIO

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import JsonResponse

API_PATH_PREFIXES = ("/v1/", "/hooks/")
READ_CHUNK_BYTES = 64 * 1024

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "throttled",
    500: "server_error",
}


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details=None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def is_api_path(path: str) -> bool:
    return any(path.startswith(prefix) or path == prefix[:-1] for prefix in API_PATH_PREFIXES)


def is_json_media_type(content_type: str) -> bool:
    """application/json, or a JSON-based type (application/<something>+json); parameters such
    as charset are not looked at here."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class ApiErrorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_api_path(request.path_info):
            return self.get_response(request)
        refusal, request = _with_whole_body(request)
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        if response.status_code >= 400 and not is_json_media_type(response.get("Content-Type", "")):
            return _as_envelope(request, response)
        return response


def _with_whole_body(request):
    """(a refusal, None), or (None, the request) with all of its body readable by the view."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = request.META.get("CONTENT_LENGTH") or ""
    transfer_encoding = request.META.get("HTTP_TRANSFER_ENCODING")
    if length and transfer_encoding:
        return error_response(
            400,
            "bad_request",
            "Send the body with Content-Length or with Transfer-Encoding, not both.",
        ), None
    if length:
        if not (length.isascii() and length.isdigit()):
            return error_response(
                400, "bad_request", "Content-Length must be a number of bytes."
            ), None
        if limit is not None and int(length) > limit:
            return _too_large(limit), None
        return None, request
    if transfer_encoding:
        return _read_chunked(request, limit)
    return None, request


def _read_chunked(request, limit):
    if not (isinstance(request, WSGIRequest) and request.META.get("wsgi.input_terminated")):
        return error_response(
            411,
            "length_required",
            "This server cannot read a chunked body: send the body with a Content-Length.",
            {"header": "Content-Length"},
        ), None
    stream = request.META["wsgi.input"]
    received, size = [], 0
    try:
        while chunk := stream.read(READ_CHUNK_BYTES):
            size += len(chunk)
            if limit is not None and size > limit:
                return _too_large(limit), None
            received.append(chunk)
    except OSError as exc:  # the client went away, or sent broken chunks
        return error_response(400, "bad_request", f"The body could not be read: {exc}"), None
    body = b"".join(received)
    # A request is built once from its WSGI environ; this one is the same request with the
    # body the server decoded, framed as Django reads a body: by its Content-Length.
    environ = {**request.META, "CONTENT_LENGTH": str(len(body)), "wsgi.input": BytesIO(body)}
    del environ["HTTP_TRANSFER_ENCODING"]
    return None, type(request)(environ)


def _too_large(limit: int) -> JsonResponse:
    return error_response(
        413,
        "body_too_large",
        f"The body is larger than {limit} bytes, the most this API accepts.",
        {"max_bytes": limit},
    )


def _as_envelope(request, response) -> JsonResponse:
    status = response.status_code
    details = None
    if status == 404:
        message = f"There is no API endpoint at {request.path}."
    elif status == 405:
        allowed = response.get("Allow", "")
        message = f"{request.method} is not allowed here; use {allowed}."
        details = {"allowed": allowed.split(", ") if allowed else []}
    elif status >= 500:
        message = "The server failed to answer this request; the failure has been logged."
    else:
        try:
            message = f"{HTTPStatus(status).phrase}."
        except ValueError:
            message = f"The request failed with status {status}."
    code = ERROR_CODES.get(status, "server_error" if status >= 500 else "bad_request")
    envelope = error_response(status, code, message, details)
    for header, value in response.items():
        if header.lower() not in ("content-type", "content-length"):
            envelope[header] = value
    envelope.cookies = response.cookies
    response.close()
    return envelope
