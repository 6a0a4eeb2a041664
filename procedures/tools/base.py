"""What every integration tool is: a name, an input JSON Schema, and a call.

A call returns a ToolResult holding the exact request sent and the exact response received
(JSON text, secrets redacted), and the output the procedure sees. It raises TransientToolError
(worth retrying: timeouts, 5xx, rate limits) or PermanentToolError (retrying cannot help:
declined, invalid, closed), carrying whatever request and response it has.
"""

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ToolContext:
    run_public_id: str
    node_id: str
    attempt: int
    environment: str  # "sandbox" or "live"
    # Derived from run, node and attempt; sent to the integration so a redelivered message can
    # never pay twice.
    idempotency_key: str
    # The environment's connection for this tool's integration, or None (sandbox simulator).
    connection: Any = None


@dataclass
class ToolResult:
    output: Any
    request: str
    response: str


class ToolError(Exception):
    kind: ClassVar[str] = "permanent"

    def __init__(self, message: str, *, request: str = "", response: str = ""):
        super().__init__(message)
        self.message = message
        self.request = request
        self.response = response


class TransientToolError(ToolError):
    kind = "transient"


class PermanentToolError(ToolError):
    kind = "permanent"


class Tool:
    """Subclass and set name, integration, description, input_schema; implement call()."""

    name: ClassVar[str]
    integration: ClassVar[str]
    description: ClassVar[str] = ""
    input_schema: ClassVar[dict] = {"type": "object"}
    # Whether a live run needs a Connection for `integration` (the Run form refuses live without
    # one, rather than letting the run fail at its first call).
    live_needs_connection: ClassVar[bool] = True

    def call(self, inputs: dict, context: ToolContext) -> ToolResult:
        raise PermanentToolError(f"tool {self.name} has no implementation")
