"""`http.request`: call any JSON HTTP API.

The request and response are recorded as described in procedures/tools/transport.py:
`{"method", "url", "headers" (credentials "[redacted]"), "body"}` and `{"status", "body"}`.
The output the procedure sees is `{"status": <int>, "body": <parsed JSON, or text>}`.

When the environment has a Connection for the "http" integration with a secret, the secret is
sent as `Authorization: Bearer ...` and recorded as "[redacted]". When that connection's config
has a `base_url`, the secret is only ever sent to URLs under it: a call elsewhere is refused
(permanent), so a definition cannot hand the token to another host.
"""

from procedures.tools import register
from procedures.tools.base import PermanentToolError, Tool, ToolContext, ToolResult
from procedures.tools.support import check_inputs
from procedures.tools.transport import NO_BODY, send_json

MAX_TIMEOUT_SECONDS = 120


@register
class HttpRequest(Tool):
    name = "http.request"
    integration = "http"
    # Any public JSON API can be called without credentials; a connection only adds a token.
    live_needs_connection = False
    description = (
        "Call a JSON HTTP API. Sends an Idempotency-Key header and, when an 'http' connection "
        "with a secret exists, a bearer token. 5xx, 429, timeouts and network errors are "
        "transient; other 3xx/4xx answers are permanent. Output: {status, body}."
    )
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["method", "url"],
        "properties": {
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
            "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "maxProperties": 50,
            },
            "body": {"description": "Any JSON value, sent as the JSON request body."},
            "timeout_seconds": {
                "type": "number",
                "minimum": 0.1,
                "maximum": MAX_TIMEOUT_SECONDS,
                "description": "Overrides TOOL_HTTP_TIMEOUT_SECONDS for this call.",
            },
        },
    }

    def call(self, inputs: dict, context: ToolContext) -> ToolResult:
        check_inputs(self.input_schema, inputs)
        secret = self._secret_for(inputs["url"], context.connection)
        exchange = send_json(
            inputs["method"],
            inputs["url"],
            context=context,
            body=inputs.get("body", NO_BODY),
            headers=inputs.get("headers"),
            secret=secret,
            timeout=inputs.get("timeout_seconds"),
        )
        return ToolResult(
            output={"status": exchange.status, "body": exchange.body},
            request=exchange.request,
            response=exchange.response,
        )

    @staticmethod
    def _secret_for(url: str, connection) -> str:
        if connection is None:
            return ""
        secret = connection.get_secret()
        base_url = (connection.config or {}).get("base_url")
        if (
            secret
            and base_url
            and not url.startswith(base_url.rstrip("/") + "/")
            and url != base_url
        ):
            raise PermanentToolError(
                f"the http connection's secret is only sent to {base_url}; {url} is outside it"
            )
        return secret
