"""The shapes of the API's answers, as they appear in /v1/openapi.json."""

from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import Field

from procedures.models import Environment
from runs.models import FailureKind, RunStatus, RunType
from runs.selectors import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# The models' choices as plain string enums: the OpenAPI document lists their values inline.
EnvironmentName = Literal[tuple(Environment.values)]
RunStatusName = Literal[tuple(RunStatus.values)]
RunTypeName = Literal[tuple(RunType.values)]


class ErrorBody(Schema):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_inputs.")
    message: str
    details: Any = None


class ErrorOut(Schema):
    error: ErrorBody


class ProcedureOut(Schema):
    id: str
    name: str
    description: str
    current_version: int | None = Field(description="Number of the version a new run uses.")
    input_schema: dict[str, Any] | None = Field(
        description="JSON Schema the inputs of a new run must match."
    )


class ProcedureList(Schema):
    procedures: list[ProcedureOut]


class RunRef(Schema):
    id: str
    status: RunStatusName
    url: str = Field(description="This run in the API.")
    dashboard_url: str = Field(description="This run in the dashboard.")


class ProcedureRef(Schema):
    id: str
    name: str


OUTCOME_DESCRIPTION = (
    "The business outcome the run ended with, as its procedure names it (e.g. `declined`), or "
    "null. A failed run with one has failure kind `business`: the procedure's answer, not a "
    "technical failure, and it cannot be retried."
)


class ListedAmount(Schema):
    minor_units: int = Field(description="In the currency's minor unit (docs/money.md).")
    currency: str = Field(description="ISO 4217 code, upper case.")


class RunSummary(Schema):
    id: str
    url: str
    procedure: ProcedureRef
    version: int
    environment: EnvironmentName
    type: RunTypeName
    status: RunStatusName
    failure_kind: str | None
    outcome: str | None = Field(description=OUTCOME_DESCRIPTION)
    references: dict[str, str] = Field(
        description="The values of the inputs the procedure declares as `reference_fields`."
    )
    amount: ListedAmount | None = Field(description="The input marked as money, if any.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunList(Schema):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


# Dates are read by the shared filter form; the pattern keeps pydantic from reading "0" as a
# Unix timestamp on the way there.
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class RunFilters(Schema):
    """The dashboard's Runs list filters, as query parameters (`status` may repeat)."""

    status: list[RunStatusName] | None = None
    procedure: str | None = Field(None, max_length=100, description="Procedure public id.")
    environment: EnvironmentName | None = Field(
        None, description="Must be the API key's own environment if given."
    )
    type: RunTypeName | None = None
    created_from: str | None = Field(None, pattern=DATE_PATTERN, description="YYYY-MM-DD")
    created_to: str | None = Field(None, pattern=DATE_PATTERN, description="YYYY-MM-DD")
    q: str | None = Field(
        None,
        max_length=500,
        description="Search: a run id or its start, or part of a reference value (3-100 "
        "characters).",
    )
    cursor: str | None = Field(None, max_length=500)
    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


class Starter(Schema):
    kind: Literal["user", "api_key", "trigger", "system"]
    label: str
    user: str | None = None
    api_key: str | None = Field(default=None, description="The key's prefix.")
    trigger: str | None = None
    trigger_event: str | None = Field(default=None, description="The outside event's id.")


class StepOut(Schema):
    sequence: int
    node_id: str
    node_type: str
    tool: str
    status: str
    attempt: int
    input: Any
    output: Any
    request: Any = Field(description="Exact request sent: parsed JSON when it parses, else text.")
    response: Any = Field(description="Exact response received, parsed the same way.")
    idempotency_key: str
    error: str
    error_kind: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None


class Override(Schema):
    field: str
    before: Any = None
    after: Any = None


class DecisionOut(Schema):
    sequence: int
    # reviews.models.Decision's and DecidedBy's values, written out: runs does not import
    # reviews. A timeout is decided by the system: no reviewer, the reason in `comment`.
    decision: Literal["approved", "rejected", "escalated"]
    decided_by: Literal["person", "system"]
    reviewer: str | None
    comment: str
    shown_values: Any
    # The digest of everything the decider was shown (values, policy, the run's state).
    shown_sha256: str
    overrides: list[Override]
    # Whether it closed the review (a rejection, the last approval of the quorum).
    final: bool
    decided_at: datetime


class ReviewOut(Schema):
    id: str
    node_id: str
    step_sequence: int
    title: str
    instructions: str
    shown_values: Any
    overridable_fields: Any
    created_at: datetime
    approvals_required: int
    deadline: datetime | None
    decision: DecisionOut | None
    decisions: list[DecisionOut]


class FailedStep(Schema):
    sequence: int
    node_id: str


class Failure(Schema):
    reason: str
    kind: Literal[tuple(FailureKind.values)] = Field(
        description="transient (may succeed if retried), permanent, rejected (by a reviewer) or "
        "business (the procedure's answer, named by the run's `outcome`)."
    )
    step: FailedStep | None


class EventOut(Schema):
    sequence: int
    type: str
    actor: str
    data: Any
    created_at: datetime
    prev_hash: str
    hash: str


class RunDetail(Schema):
    id: str
    url: str
    dashboard_url: str
    procedure: ProcedureRef
    version: int
    environment: EnvironmentName
    type: RunTypeName
    starter: Starter
    inputs: Any
    status: RunStatusName
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    output: Any
    outcome: str | None = Field(description=OUTCOME_DESCRIPTION)
    failure: Failure | None
    steps: list[StepOut]
    reviews: list[ReviewOut]
    events: list[EventOut]
    retry_of: str | None
    retries: list[str]


# Every operation may answer these, all as ErrorOut: 413 for any body over the size limit and 500
# from rapidfolio/api_errors.py, whatever the operation; 415 only where a body is read.
ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    413: ErrorOut,
    422: ErrorOut,
    500: ErrorOut,
}
BODY_ERRORS = {**ERRORS, 415: ErrorOut}
