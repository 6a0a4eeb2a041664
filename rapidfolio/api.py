"""The HTTP API under /v1/ (django-ninja), with its OpenAPI document at /v1/openapi.json and
browsable docs at /v1/docs (Swagger UI served from our own static files, as the CSP requires).

Every error, ours or ninja's, is answered as
`{"error": {"code": "...", "message": "...", "details": ...}}` with a 4xx status.
"""

from django.conf import settings
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.urls import path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError

from runs.api import router as runs_router
from runs.api_auth import API_KEY_AUTH, ApiError, StrictJSONParser
from runs.errors import RunError
from runs.procedures_api import router as procedures_router

HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid_request",
    429: "throttled",
}


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def _json_method_not_allowed(view):
    """Answer a wrong method with the error envelope instead of ninja's plain-text 405."""

    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = JsonResponse(
                error_body(
                    "method_not_allowed",
                    f"{request.method} is not allowed here; use {allowed}.",
                    {"allowed": allowed.split(", ")},
                ),
                status=405,
            )
            response["Allow"] = allowed
        return response

    wrapped.csrf_exempt = getattr(view, "csrf_exempt", False)
    return wrapped


def _unknown_path(request, unknown):
    return JsonResponse(
        error_body("not_found", f"There is no API endpoint at {request.path}."), status=404
    )


# Swagger UI sets some styles inline; the docs page (no user input on it) may apply them.
# Scripts stay 'self' only: the bundle and its init script are our own static files.
DOCS_CSP = {**settings.SECURE_CSP, "style-src": [CSP.SELF, CSP.UNSAFE_INLINE]}


class RapidfolioAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation) -> str:
        return operation.view_func.__name__

    @property
    def urls(self):
        patterns, app_name, namespace = super().urls
        for pattern in patterns:
            pattern.callback = _json_method_not_allowed(pattern.callback)
        patterns.append(path("<path:unknown>", _unknown_path))
        return patterns, app_name, namespace


api = RapidfolioAPI(
    title="Rapidfolio Runs API",
    version="1",
    description="Start procedure runs and read their permanent record. Authenticate with "
    "`Authorization: Bearer <key>` (or `X-API-Key`); each key acts in one environment.",
    urls_namespace="api",
    auth=API_KEY_AUTH,
    parser=StrictJSONParser(),
    docs=Swagger(settings={"persistAuthorization": True}),
    docs_decorator=csp_override(DOCS_CSP),
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
        "Missing, unknown or revoked API key. Send `Authorization: Bearer <key>`.",
    )


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    code = HTTP_ERROR_CODES.get(exc.status_code, "error")
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


api.add_router("/", procedures_router)
api.add_router("/", runs_router)
