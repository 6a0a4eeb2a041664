"""The API's edge guarantees: API-key authentication, environment scoping, Idempotency-Key, and
JSON bodies the database can store.

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`, one rule for both
(key_of_request): whichever header is present must hold an active key, so a revoked, unknown or
malformed credential fails the request whatever the other header holds, and both headers must
carry the same key. Each key belongs to one environment; a request that names the other
environment is refused with 403, and a run of the other environment is not found (404), exactly
as an unknown id (runs.selectors.visible_runs).

Idempotency-Key: the first successful (2xx) answer to a POST is stored with a hash of the request
(method, path, canonical JSON body) in the same transaction as the work it describes, so a
repeat gets that answer back and nothing is done twice. Two concurrent duplicates race on the
unique (api_key, key) constraint: the loser's transaction, run included, rolls back and it
replays the winner's answer. Error answers are not stored, so a client can fix its request and
try again with the same key.

JSON bodies (the API's and the trigger webhooks') are parsed strictly: NaN and Infinity, NUL
characters and lone surrogates are valid for Python's json module but cannot be stored in a
PostgreSQL JSON column (nor hashed as UTF-8), so they are refused as malformed up front. A
body is parsed only when its Content-Type says JSON (RFC 8259: in UTF-8); anything else is a
415, however well it would parse.
"""

import hashlib
import json
import re

from django.db import IntegrityError, transaction
from ninja.parser import Parser
from ninja.security.base import AuthBase

from rapidfolio.api_errors import is_json_media_type
from runs import api_keys
from runs.models import ApiKey, IdempotencyRecord

IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"  # printable ASCII, as HTTP headers should be
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
JSON_MEDIA_TYPE = "application/json"


class ApiError(Exception):
    """A refusal at the API edge, answered as {"error": {code, message, details}}."""

    def __init__(self, status_code: int, code: str, message: str, *, details=None):
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check_storable(value) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ValueError("strings cannot contain the NUL character (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    "strings cannot contain lone surrogates (\\ud800-\\udfff)"
                ) from None


def parse_json_body(raw: bytes):
    """The JSON value of a request body; ValueError (or RecursionError when absurdly deep)
    for anything that is not JSON we can store as received."""
    value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    _check_storable(value)
    return value


def require_json_content_type(request) -> None:
    content_type = request.META.get("CONTENT_TYPE", "")
    charset = request.content_params.get("charset", "utf-8").strip().lower()
    if not is_json_media_type(content_type) or charset not in ("utf-8", "utf8"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send the body as {JSON_MEDIA_TYPE} in UTF-8; this request's Content-Type is "
            f"{content_type or 'missing'}.",
            details={"expected": JSON_MEDIA_TYPE, "received": content_type or None},
        )


class StrictJSONParser(Parser):
    def parse_body(self, request):
        require_json_content_type(request)
        return parse_json_body(request.body)


def not_found(what: str, public_id: str) -> ApiError:
    return ApiError(404, "not_found", f"No {what} with id {public_id!r}.")


def is_public_id(value: str) -> bool:
    """Whether `value` could be a public id at all; anything else is a 404 without a query
    (and never reaches the database with characters it refuses, such as NUL)."""
    return PUBLIC_ID.fullmatch(value) is not None


def _unauthorized(reason: str, message: str, headers: list[str]) -> ApiError:
    return ApiError(401, "unauthorized", message, details={"reason": reason, "headers": headers})


def _presented_keys(request) -> list[tuple[str, str]]:
    """(header, raw key) for each API-key header the request carries; a header that is there
    but holds no key in the expected form fails the request."""
    presented = []
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(
                "malformed",
                "The Authorization header must be `Bearer <key>`.",
                ["Authorization"],
            )
        presented.append(("Authorization", token.strip()))
    header_key = request.headers.get("X-API-Key")
    if header_key is not None:
        if not header_key.strip():
            raise _unauthorized("malformed", "The X-API-Key header is empty.", ["X-API-Key"])
        presented.append(("X-API-Key", header_key.strip()))
    return presented


def key_of_request(request) -> ApiKey | None:
    """The active API key the request authenticates with; None when it carries none (ninja
    then answers 401). Every credential presented must hold, not just one of them."""
    presented = _presented_keys(request)
    if not presented:
        return None
    headers = [header for header, _ in presented]
    if len({raw for _, raw in presented}) > 1:
        raise _unauthorized(
            "conflicting",
            "Authorization and X-API-Key carry different keys: send one key.",
            headers,
        )
    api_key = api_keys.authenticate(presented[0][1])
    if api_key is None:
        raise _unauthorized(
            "unknown_or_revoked",
            f"The API key in {' and '.join(headers)} is unknown or revoked.",
            headers,
        )
    return api_key


class BearerKey(AuthBase):
    openapi_type = "http"
    openapi_scheme = "bearer"
    openapi_description = (
        "`Authorization: Bearer <key>`. X-API-Key is accepted instead; if both are sent they "
        "must carry the same key, and an unknown or revoked key in either fails the request."
    )

    def __call__(self, request):
        return key_of_request(request)


class HeaderKey(AuthBase):
    openapi_type = "apiKey"
    openapi_in = "header"
    openapi_name = "X-API-Key"
    openapi_description = "`X-API-Key: <key>`, the same key as `Authorization: Bearer <key>`."

    def __call__(self, request):
        return key_of_request(request)


# Two security schemes in the OpenAPI document, one rule (key_of_request) for both headers.
API_KEY_AUTH = [BearerKey(), HeaderKey()]


def require_environment(api_key: ApiKey, environment: str) -> None:
    if environment != api_key.environment:
        raise ApiError(
            403,
            "wrong_environment",
            f"This API key belongs to the {api_key.environment} environment and cannot act on "
            f"{environment}.",
            details={"key_environment": api_key.environment, "environment": environment},
        )


def request_hash(request) -> str:
    try:
        body = json.dumps(json.loads(request.body or b"null"), sort_keys=True)
    except ValueError:
        body = request.body.decode("utf-8", "replace")
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


def idempotent(request, api_key: ApiKey, key: str | None, produce) -> tuple[int, dict]:
    """Call `produce()` -> (status, body) at most once per Idempotency-Key and API key."""
    if key is None:
        return produce()
    if (
        not key.strip()
        or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH
        or not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key)
    ):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"The Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII "
            "characters.",
        )
    fingerprint = request_hash(request)
    record = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
    if record is not None:
        return _replay(record, fingerprint)
    try:
        with transaction.atomic():
            status, body = produce()
            if 200 <= status < 300:
                IdempotencyRecord.objects.create(
                    api_key=api_key,
                    key=key,
                    method=request.method,
                    path=request.path[:500],
                    request_hash=fingerprint,
                    response_status=status,
                    response_body=body,
                )
    except IntegrityError:
        record = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
        if record is None:
            raise
        return _replay(record, fingerprint)
    return status, body


def _replay(record: IdempotencyRecord, fingerprint: str) -> tuple[int, dict]:
    if record.request_hash != fingerprint:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request.",
            details={"first_request": f"{record.method} {record.path}"},
        )
    return record.response_status, record.response_body
