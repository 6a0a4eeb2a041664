"""Helpers shared by the tool modules: input checks, recorded JSON text, secrets, sandbox rules.

Recorded text is compact JSON (`json.dumps` with its default separators and key order kept), so
what the run page shows is byte for byte what was built here.

Sandbox failure scheme, the same for every simulated tool: each tool names one *subject* input
(the customer, the account, the wire reference, the recipient...). When the subject contains,
case-insensitively,
- "flaky": the call fails transiently on attempts 1 and 2 and succeeds on attempt 3;
- "timeout": the call fails transiently on every attempt (retries run out);
- "blocked": the call fails permanently.
"""

import hashlib
import json
import time
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from procedures.tools.base import PermanentToolError, ToolContext, TransientToolError
from rapidfolio.ids import CROCKFORD

REDACTED = "[redacted]"
FLAKY_ATTEMPTS = 2
# Header names whose values are credentials, whatever their value.
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def check_inputs(schema: dict, inputs: Any) -> None:
    """Refuse inputs that do not match the tool's schema, before anything is sent."""
    error = best_match(_validator(json.dumps(schema)).iter_errors(inputs))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path)
        prefix = f"input '{where}'" if where else "input"
        raise PermanentToolError(
            f"{prefix} is not valid: {error.message}", request=dumps({"inputs": inputs})
        )


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    # Built once per distinct schema, keyed by its JSON text (key order kept: it decides which
    # error is found first): building a validator costs more than checking a small input.
    return Draft202012Validator(json.loads(schema_json))


def redact(text: str, *secrets: str) -> str:
    """Remove every secret from text (a last line of defence; secrets are never put in it)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret:
                text = text.replace(escaped, REDACTED)
    return text


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: REDACTED if _is_secret_header(name) else value for name, value in headers.items()}


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADERS or "token" in lowered or "secret" in lowered


def digest(*parts: Any) -> str:
    """A stable hex digest of the parts, for deterministic simulated ids and values."""
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()


def number_from(*parts: Any, low: int, high: int) -> int:
    """A stable integer in [low, high] derived from the parts."""
    return low + int(digest(*parts)[:12], 16) % (high - low + 1)


def created_timestamp(context: ToolContext) -> int:
    """Unix time the run was created (read from its ULID public id), so simulators are stable."""
    ulid = context.run_public_id.rpartition("_")[2].lower()
    try:
        millis = 0
        for char in ulid[:10]:
            millis = millis * 32 + CROCKFORD.index(char)
    except ValueError:
        millis = 0
    if len(ulid) < 10 or not millis:
        return 1_700_000_000 + number_from(context.run_public_id, low=0, high=10_000_000)
    return millis // 1000


def iso_time(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def simulated_failure(
    subject: Any,
    context: ToolContext,
    *,
    request: str,
    transient: tuple[str, dict],
    permanent: tuple[str, dict],
    transient_status: int = 503,
    permanent_status: int = 400,
) -> None:
    """Raise the simulated failure the subject asks for (see the module docstring), if any.

    `transient` and `permanent` are (message, response body) pairs; a simulated timeout has no
    response at all.
    """
    marker = str(subject or "").lower()
    if "blocked" in marker:
        message, body = permanent
        raise PermanentToolError(
            message, request=request, response=simulated_response(body, permanent_status)
        )
    if "timeout" in marker:
        raise TransientToolError(
            f"no answer within the time limit (simulated timeout, attempt {context.attempt})",
            request=request,
        )
    if "flaky" in marker and context.attempt <= FLAKY_ATTEMPTS:
        message, body = transient
        raise TransientToolError(
            f"{message} (simulated, attempt {context.attempt})",
            request=request,
            response=simulated_response(body, transient_status),
        )


def simulated_request(method: str, path: str, context: ToolContext, body: Any) -> str:
    return dumps(
        {
            "simulated": True,
            "method": method,
            "path": path,
            "headers": {"Idempotency-Key": context.idempotency_key},
            "body": body,
        }
    )


def simulated_response(body: Any, status: int = 200) -> str:
    return dumps({"simulated": True, "status": status, "body": body})
