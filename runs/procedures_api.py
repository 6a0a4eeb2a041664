"""Procedures over the API: list them, read one, start a run of its current version."""

from typing import Any

from ninja import Body, Router, Status

from procedures.models import Procedure
from runs import services, sql
from runs.api import IdempotencyKey, run_ref
from runs.api_auth import (
    ApiError,
    idempotent,
    is_public_id,
    not_found,
    require_environment,
)
from runs.api_schemas import (
    ERRORS,
    EnvironmentName,
    ErrorOut,
    ProcedureList,
    ProcedureOut,
    RunRef,
)
from runs.models import RunType

router = Router(tags=["procedures"])


def _procedure_out(procedure: Procedure) -> dict:
    version = procedure.current_version
    return {
        "id": procedure.public_id,
        "name": procedure.name,
        "description": procedure.description,
        "current_version": version.number if version else None,
        "input_schema": version.input_schema if version else None,
    }


def _procedure(procedure_id: str) -> Procedure:
    if not is_public_id(procedure_id):
        raise not_found("procedure", procedure_id)
    try:
        return Procedure.objects.get(public_id=procedure_id)
    except Procedure.DoesNotExist:
        raise not_found("procedure", procedure_id) from None


@router.get("/procedures", response={200: ProcedureList, **ERRORS}, summary="List procedures")
def list_procedures(request):
    procedures = Procedure.objects.order_by("name").prefetch_related("versions")
    return {"procedures": [_procedure_out(p) for p in procedures]}


@router.get(
    "/procedures/{procedure_id}",
    response={200: ProcedureOut, **ERRORS},
    summary="Read a procedure with its current version's input schema",
)
def get_procedure(request, procedure_id: str):
    return _procedure_out(_procedure(procedure_id))


@router.post(
    "/procedures/{procedure_id}/{environment}",
    response={202: RunRef, 409: ErrorOut, **ERRORS},
    summary="Start a run of the procedure's current version",
    description="The body is the run's inputs, validated against the version's input JSON "
    "Schema (422 lists every failing field). The run is executed by a worker; poll its `url`.",
)
def start_run(
    request,
    procedure_id: str,
    environment: EnvironmentName,
    inputs: Body[dict[str, Any]],
    idempotency_key: str | None = IdempotencyKey,
):
    api_key = request.auth
    version = sql.current_version(procedure_id) if is_public_id(procedure_id) else None
    if version is None:
        # Rare: tell an unknown procedure (404) from one without a version yet (409).
        _procedure(procedure_id)
    require_environment(api_key, environment)
    if version is None:
        raise ApiError(409, "no_version", f"Procedure {procedure_id!r} has no version yet.")

    def start():
        run = services.start_run(
            version=version,
            environment=environment,
            inputs=inputs,
            type=RunType.API,
            api_key=api_key,
        )
        return 202, run_ref(run)

    return Status(*idempotent(request, api_key, idempotency_key, start))
