"""The HTTP API under /v1/ (django-ninja), with its OpenAPI document at /v1/openapi.json and
browsable docs at /v1/docs (Swagger UI served from our own static files, as the CSP requires).

Every error, ours or ninja's, is answered as
`{"error": {"code": "...", "message": "...", "details": ...}}`: here for what ninja's operations
raise, and by rapidfolio/api_errors.py's middleware for what never reaches them (a body too large
or badly framed, ninja's 405, an unhandled exception's 500).
"""

from django.conf import settings
from django.http import Http404, JsonResponse, UnreadablePostError
from django.urls import path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError

from rapidfolio.api_errors import ERROR_CODES, error_body
from runs.api import router as runs_router
from runs.api_auth import API_KEY_AUTH, ApiError, StrictJSONParser
from runs.errors import RunError
from runs.procedures_api import describe_procedure_inputs
from runs.procedures_api import router as procedures_router


def _unknown_path(request, unknown):
    return JsonResponse(
        error_body("not_found", f"There is no API endpoint at {request.path}."), status=404
    )


# Swagger UI sets some styles inline; the docs page (no user input on it) may apply them.
# Scripts stay 'self' only: the bundle and its init script are our own static files.
DOCS_CSP = {**settings.SECURE_CSP, "style-src": [CSP.SELF, CSP.UNSAFE_INLINE]}


def _document_view(view):
    """The OpenAPI document and the docs page: read with GET or HEAD only (any other method is
    a 405), under the docs page's CSP."""
    return require_safe(csp_override(DOCS_CSP)(view))


class RapidfolioAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation) -> str:
        return operation.view_func.__name__

    @property
    def urls(self):
        patterns, app_name, namespace = super().urls
        patterns.append(path("<path:unknown>", _unknown_path))
        # The API authenticates by key, never by cookie, so CSRF does not apply: ninja exempts
        # its operations, and the document, the root and unknown paths are exempt too, so that a
        # POST there is the 405 or 404 it is, not a CSRF failure.
        for pattern in patterns:
            pattern.callback = csrf_exempt(pattern.callback)
        return patterns, app_name, namespace

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        document = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        describe_procedure_inputs(document)
        return document


api = RapidfolioAPI(
    title="Rapidfolio Runs API",
    version="1",
    description="Start procedure runs and read their permanent record. Authenticate with "
    "`Authorization: Bearer <key>` or `X-API-Key: <key>`: if both are sent they must carry the "
    "same key, and an unknown, revoked or malformed key in either is a 401. Each key acts in "
    "one environment. Bodies are JSON (`Content-Type: application/json`, UTF-8), at most "
    f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes. Every error is "
    '`{"error": {"code", "message", "details"}}`.',
    urls_namespace="api",
    auth=API_KEY_AUTH,
    parser=StrictJSONParser(),
    docs=Swagger(settings={"persistAuthorization": True}),
    docs_decorator=_document_view,
)


def _respond(request, status: int, code: str, message: str, details=None):
    return api.create_response(request, error_body(code, message, details), status=status)


@api.exception_handler(RunError)
def run_error(request, exc: RunError):
    return _respond(request, exc.status_code, exc.code, exc.message, exc.details)


@api.exception_handler(ApiError)
def api_error(request, exc: ApiError):
    return _respond(request, exc.status_code, exc.code, exc.message, exc.details)


@api.exception_handler(ValidationError)
def validation_error(request, exc: ValidationError):
    details = [
        {
            "field": ".".join(str(part) for part in error.get("loc", ())),
            "message": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors
    ]
    message = "The request is not valid: " + "; ".join(
        f"{d['field']}: {d['message']}" for d in details
    )
    return _respond(request, 422, "invalid_request", message, details)


@api.exception_handler(AuthenticationError)
def authentication_error(request, exc: AuthenticationError):
    return _respond(
        request,
        401,
        "unauthorized",
        "No API key: send `Authorization: Bearer <key>` (or `X-API-Key: <key>`).",
        {"reason": "missing", "headers": []},
    )


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    code = ERROR_CODES.get(exc.status_code, "error")
    if isinstance(exc.__cause__, ApiError):
        # ninja wraps what the body parser raises (a 415) as "Cannot parse request body".
        return api_error(request, exc.__cause__)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # ninja's "Cannot parse request body": say what is wrong with it.
        return _respond(
            request,
            400,
            "malformed_request",
            f"The request body is not valid JSON: {exc.__cause__}",
        )
    return _respond(request, exc.status_code, code, str(exc))


@api.exception_handler(Http404)
def not_found(request, exc: Http404):
    return _respond(request, 404, "not_found", "Not found.")


@api.exception_handler(UnreadablePostError)
def unreadable_body(request, exc: UnreadablePostError):
    # The client stopped sending before Content-Length bytes arrived: its fault, not a 500.
    return _respond(request, 400, "bad_request", f"The body could not be read: {exc}")


api.add_router("/", procedures_router)
api.add_router("/", runs_router)
