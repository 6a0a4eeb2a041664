"""The API's edge guarantees: API-key authentication, environment scoping, Idempotency-Key, and
JSON bodies the database can store.

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Each key belongs to one
environment; a request that names or reads the other environment is refused with 403.

Idempotency-Key: the first successful (2xx) answer to a POST is stored with a hash of the request
(method, path, canonical JSON body) in the same transaction as the work it describes, so a
repeat gets that answer back and nothing is done twice. Two concurrent duplicates race on the
unique (api_key, key) constraint: the loser's transaction, run included, rolls back and it
replays the winner's answer. Error answers are not stored, so a client can fix its request and
try again with the same key.

JSON bodies (the API's and the trigger webhooks') are parsed strictly: NaN and Infinity, NUL
characters and lone surrogates are valid for Python's json module but cannot be stored in a
PostgreSQL JSON column (nor hashed as UTF-8), so they are refused as malformed up front.
"""

import hashlib
import json
import re

from django.db import IntegrityError, transaction
from ninja.parser import Parser
from ninja.security import APIKeyHeader, HttpBearer

from runs import api_keys
from runs.models import ApiKey, IdempotencyRecord

IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"  # printable ASCII, as HTTP headers should be
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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


class StrictJSONParser(Parser):
    def parse_body(self, request):
        return parse_json_body(request.body)


def not_found(what: str, public_id: str) -> ApiError:
    return ApiError(404, "not_found", f"No {what} with id {public_id!r}.")


def is_public_id(value: str) -> bool:
    """Whether `value` could be a public id at all; anything else is a 404 without a query
    (and never reaches the database with characters it refuses, such as NUL)."""
    return PUBLIC_ID.fullmatch(value) is not None


class BearerKey(HttpBearer):
    def authenticate(self, request, token):
        return api_keys.authenticate(token.strip())


class HeaderKey(APIKeyHeader):
    param_name = "X-API-Key"

    def authenticate(self, request, key):
        return api_keys.authenticate((key or "").strip())


# Either header works; ninja tries them in order and answers 401 when neither yields a key.
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
