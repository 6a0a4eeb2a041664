"""Runs over the API: read one run, list runs, cancel, retry."""

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, QueryDict
from django.urls import reverse
from ninja import Header, Query, Router, Status
from ninja.renderers import JSONRenderer

from rapidfolio.public_url import base_url
from runs import api_export, evidence, selectors, services
from runs.api_auth import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_KEY_PATTERN,
    ApiError,
    idempotent,
    is_public_id,
    not_found,
    require_environment,
)
from runs.api_schemas import (
    ERRORS,
    ErrorOut,
    RunDetail,
    RunFilters,
    RunList,
    RunRef,
)
from runs.models import Run, RunStatus, duration_ms

router = Router(tags=["runs"])

# The API root (rapidfolio/api.py) keeps ninja's default renderer; get_run renders with it too.
RENDERER = JSONRenderer()
# A moment as RENDERER writes one (DjangoJSONEncoder: ISO 8601, milliseconds, "Z"). get_run
# writes the step log's and the timeline's with it before rendering: a thousand-step run has
# 2,200 of them, and the C encoder calling back into Python for each (through ninja's default,
# then Django's) cost 1.7 ms of the render's 18.6 (in-process, bench.page_profile's run).
_ENCODE_MOMENT = DjangoJSONEncoder().default


def _moment(value):
    return None if value is None else _ENCODE_MOMENT(value)


IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
    pattern=IDEMPOTENCY_KEY_PATTERN,
    description="Repeat a POST safely: the same key and body return the first answer.",
)


# `base` is public_url.base_url(request): PUBLIC_BASE_URL, or the address the request came to.
def api_url(run: Run, base: str) -> str:
    return f"{base}{reverse('api:get_run', args=[run.public_id])}"


def dashboard_url(run: Run, base: str) -> str:
    return f"{base}{reverse('runs:detail', args=[run.public_id])}"


def run_ref(run: Run, base: str) -> dict:
    return {
        "id": run.public_id,
        "status": run.status,
        "url": api_url(run, base),
        "dashboard_url": dashboard_url(run, base),
    }


def _parsed(text: str):
    """Stored request/response text as JSON when it is JSON, else the text itself."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _starter(run: Run) -> dict:
    starter = {"label": run.started_by_label}
    if run.started_by_user_id:
        return starter | {"kind": "user", "user": run.started_by_user.get_username()}
    if run.started_by_api_key_id:
        return starter | {"kind": "api_key", "api_key": run.started_by_api_key.prefix}
    if run.started_by_trigger_id:
        return starter | {
            "kind": "trigger",
            "trigger": run.started_by_trigger.public_id,
            "trigger_event": run.trigger_event.external_id if run.trigger_event_id else None,
        }
    return starter | {"kind": "system"}


def _failure(run: Run) -> dict | None:
    if run.status != RunStatus.FAILED:
        return None
    step = run.failed_step
    return {
        "reason": run.failure_reason,
        "kind": run.failure_kind,
        "step": {"sequence": step.sequence, "node_id": step.node_id} if step else None,
    }


def _review(request) -> dict:
    # Each approval of a quorum is a decision of its own; `decision` is the one that closed
    # the review (a rejection, the last approval), if any.
    decisions = sorted(request.decisions.all(), key=lambda d: d.sequence)
    final = next((d for d in decisions if d.final), None)
    return {
        "id": request.public_id,
        "node_id": request.node_id,
        "step_sequence": request.step_sequence,
        "title": request.title,
        "instructions": request.instructions,
        "shown_values": request.shown_values,
        "overridable_fields": request.overridable_fields,
        "created_at": request.created_at,
        "approvals_required": (request.policy or {}).get("approvals", 1),
        "deadline": request.deadline,
        "decision": None if final is None else _decision(final),
        "decisions": [_decision(decision) for decision in decisions],
    }


def _decision(decision) -> dict:
    return {
        "sequence": decision.sequence,
        "decision": decision.decision,
        "decided_by": decision.decided_by,
        "reviewer": decision.reviewer.get_username() if decision.reviewer_id else None,
        "comment": decision.comment,
        "shown_values": decision.shown_values,
        "shown_sha256": decision.shown_sha256,
        "overrides": decision.overrides,
        "final": decision.final,
        "decided_at": decision.decided_at,
    }


def run_record(record: selectors.RunRecord, base: str) -> dict:
    """The whole record of a run read by selectors.run_with_everything, shaped as RunDetail."""
    run = record.run
    return {
        **run_ref(run, base),
        "procedure": {"id": run.procedure.public_id, "name": run.procedure.name},
        "version": run.version.number,
        "environment": run.environment,
        "type": run.type,
        "starter": _starter(run),
        "inputs": run.inputs,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "output": run.output,
        "outcome": run.outcome or None,
        "failure": _failure(run),
        "steps": [_step(step) for step in record.steps],
        "reviews": [_review(request) for request in run.review_requests.all()],
        "events": [_event(event) for event in record.events],
        "retry_of": run.retry_of.public_id if run.retry_of_id else None,
        "retries": [retry.public_id for retry in run.retries.all()],
    }


def _step(step) -> dict:
    # Keys in StepOut's order (see get_run).
    return {
        "sequence": step.sequence,
        "node_id": step.node_id,
        "node_type": step.node_type,
        "tool": step.tool,
        "status": step.status,
        "attempt": step.attempt,
        "input": step.input,
        "output": step.output,
        "request": _parsed(step.request),
        "response": _parsed(step.response),
        "idempotency_key": step.idempotency_key,
        "error": step.error,
        "error_kind": step.error_kind,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration_ms": duration_ms(step.started_at, step.finished_at),
    }


def _event(event) -> dict:
    # Keys in EventOut's order (see get_run).
    return {
        "sequence": event.sequence,
        "type": event.type,
        "actor": event.actor,
        "data": event.data,
        "created_at": event.created_at,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _run_summary(run: Run, base: str) -> dict:
    return {
        "id": run.public_id,
        "url": api_url(run, base),
        "procedure": {"id": run.procedure.public_id, "name": run.procedure.name},
        "version": run.version.number,
        "environment": run.environment,
        "type": run.type,
        "status": run.status,
        "failure_kind": run.failure_kind or None,
        "outcome": run.outcome or None,
        "references": run.reference_values,
        "amount": (
            {"minor_units": run.amount_minor, "currency": run.amount_currency}
            if run.amount_minor is not None
            else None
        ),
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def _run_in_key_environment(request, run_id: str) -> Run:
    """The run, if it is of the key's environment; another environment's run is the same 404
    as an unknown id, so a key learns nothing about the runs it may not touch."""
    if not is_public_id(run_id):
        raise not_found("run", run_id)
    try:
        return selectors.run_detail(run_id, viewer=request.auth)
    except Run.DoesNotExist:
        raise not_found("run", run_id) from None


@router.get(
    "/runs",
    response={200: RunList, **ERRORS},
    summary="List runs, newest first",
    description="Only runs of the API key's environment. Pagination is by cursor: pass the "
    "answer's `next_cursor` as `cursor` until it is null." + api_export.DESCRIPTION,
    openapi_extra={"responses": {200: {"content": api_export.CONTENT}}},
)
def list_runs(request, filters: Query[RunFilters]):
    api_key = request.auth
    if filters.environment is not None:
        require_environment(api_key, filters.environment)
    params = QueryDict(mutable=True)
    params.setlist("status", filters.status or [])
    params["environment"] = api_key.environment
    for name in ("procedure", "type", "created_from", "created_to", "q"):
        value = getattr(filters, name)
        if value:
            params[name] = value
    media_type = api_export.requested_media_type(request)  # CSV or JSON Lines: every run
    if media_type is not None:
        return api_export.response(request, params, media_type)
    try:
        page = selectors.list_runs(
            params, viewer=api_key, cursor=filters.cursor, page_size=filters.limit
        )
    except selectors.InvalidCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    if page.filter.form.errors:
        raise api_export.invalid_filters(page.filter.form.errors.get_json_data())
    base = base_url(request)
    runs = [_run_summary(run, base) for run in page.runs]
    return {"runs": runs, "next_cursor": page.next_cursor}


@router.get(
    "/runs/{run_id}",
    response={200: RunDetail, **ERRORS},
    url_name="get_run",
    summary="Read a run: inputs, steps, reviews, output or failure, events",
)
def get_run(request, run_id: str):
    if not is_public_id(run_id):
        raise not_found("run", run_id)
    try:
        record = selectors.run_with_everything(run_id, viewer=request.auth)
    except Run.DoesNotExist:  # also another environment's run, as _run_in_key_environment
        raise not_found("run", run_id) from None
    body = run_record(record, base_url(request))
    # The schema is applied to everything but the step log and the timeline, which are built
    # above exactly as StepOut and EventOut lay them out (flat, every field given, values as
    # read from their typed columns): validating and dumping a thousand steps through pydantic
    # took 15 ms of a 75 ms answer and changed nothing. tests/test_api.py checks the answer
    # equals the fully validated one.
    steps, events = body.pop("steps"), body.pop("events")
    answer = RunDetail.model_validate({**body, "steps": [], "events": []}).model_dump()
    answer["steps"], answer["events"] = steps, events
    # Their moments written as the renderer writes them, once each (see _ENCODE_MOMENT).
    for step in steps:
        step["started_at"] = _moment(step["started_at"])
        step["finished_at"] = _moment(step["finished_at"])
    for event in events:
        event["created_at"] = _moment(event["created_at"])
    return HttpResponse(
        RENDERER.render(request, answer, response_status=200),
        content_type=f"{RENDERER.media_type}; charset={RENDERER.charset}",
    )


@router.get(
    "/runs/{run_id}/evidence",
    response={200: dict[str, Any], 409: ErrorOut, **ERRORS},
    url_name="run_evidence",
    summary="A run's evidence bundle, verifiable offline (docs/evidence.md)",
    description="The whole record, each event as its ledger leaf with an inclusion proof, and "
    "the signed checkpoint: `python -m rapidfolio_verify BUNDLE --public-key KEY` checks it "
    "without Rapidfolio. 409 while the run's latest events are not sealed yet (seconds).",
)
def get_run_evidence(request, run_id: str):
    run = _run_in_key_environment(request, run_id)
    try:
        return evidence.bundle(run)
    except evidence.NotSealed as exc:
        raise ApiError(409, "not_sealed", str(exc)) from None


@router.post(
    "/runs/{run_id}/cancel",
    response={200: RunRef, 409: ErrorOut, **ERRORS},
    summary="Cancel a pending, running or awaiting-review run",
)
def cancel_run(request, run_id: str, idempotency_key: str | None = IdempotencyKey):
    run = _run_in_key_environment(request, run_id)

    def cancel():
        cancelled = services.cancel_run(run=run, api_key=request.auth)
        return 200, run_ref(cancelled, base_url(request))

    return Status(*idempotent(request, request.auth, idempotency_key, cancel))


@router.post(
    "/runs/{run_id}/retry",
    response={202: RunRef, 409: ErrorOut, **ERRORS},
    summary="Retry a run that failed transiently: a new run with the same inputs and version",
)
def retry_run(request, run_id: str, idempotency_key: str | None = IdempotencyKey):
    run = _run_in_key_environment(request, run_id)

    def retry():
        return 202, run_ref(services.retry_run(run=run, api_key=request.auth), base_url(request))

    return Status(*idempotent(request, request.auth, idempotency_key, retry))
