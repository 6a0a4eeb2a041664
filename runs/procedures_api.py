"""Procedures over the API: list them, read one, start a run of its current version.

The OpenAPI document describes each procedure's inputs as they are validated: beside the
generic start-run path, every procedure with a version has its own,
`/v1/procedures/<id>/{environment}` (the same URL, spelled out), whose body is the current
version's input JSON Schema (describe_procedure_inputs). OpenAPI 3.1 matches such a concrete
path before the templated one, and its schemas are JSON Schema 2020-12, the dialect the inputs
are validated with (procedures/inputs.py), so a client or a fuzzer reads exactly the rule the
server applies.
"""

import copy
from typing import Any

from django.db.models import OuterRef, Subquery
from ninja import Body, Router, Status

from procedures.models import Procedure, ProcedureVersion
from rapidfolio.public_url import base_url
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
    BODY_ERRORS,
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
    response={202: RunRef, 409: ErrorOut, **BODY_ERRORS},
    summary="Start a run of the procedure's current version",
    description="The body is the run's inputs, validated against the version's input JSON "
    "Schema (422 lists every failing field); each procedure's own path in this document shows "
    "that schema. The run is executed by a worker; poll its `url`.",
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
        return 202, run_ref(run, base_url(request))

    return Status(*idempotent(request, api_key, idempotency_key, start))


def current_versions():
    """Every procedure's current (newest) version, with its procedure, by name: one query."""
    newest = (
        ProcedureVersion.objects.filter(procedure=OuterRef("procedure"))
        .order_by("-number")
        .values("number")[:1]
    )
    return (
        ProcedureVersion.objects.filter(number=Subquery(newest))
        .select_related("procedure")
        .order_by("procedure__name")
    )


# Keywords whose values are data, not schemas: a {"$ref": ...} inside them is not a reference.
_DATA_KEYWORDS = {"const", "enum", "default", "examples"}


def _repointed(value, at: str):
    """A schema moved to `at` in the document, its own references (`#`, `#/$defs/...`) following
    it there."""
    if isinstance(value, list):
        return [_repointed(item, at) for item in value]
    if not isinstance(value, dict):
        return value
    moved = {}
    for key, item in value.items():
        if key in _DATA_KEYWORDS:
            moved[key] = item
        elif key in ("$ref", "$dynamicRef") and isinstance(item, str) and item[:2] in ("#", "#/"):
            moved[key] = at + item[1:]
        else:
            moved[key] = _repointed(item, at)
    return moved


def inputs_component(version: ProcedureVersion, name: str) -> dict:
    """The version's input schema as the OpenAPI component `name`. `$schema` and `$id` are left
    out: the inputs are validated as 2020-12 whatever `$schema` says, and references resolve
    against the component's place in the document, not an `$id`."""
    schema = _repointed(version.input_schema, f"#/components/schemas/{name}")
    schema.pop("$schema", None)
    schema.pop("$id", None)
    schema.setdefault("title", f"{version.procedure.name} inputs")
    return schema


def describe_procedure_inputs(document: dict) -> None:
    """Add to the OpenAPI `document` a start-run path per procedure with a version, after the
    generic one, whose request body is that procedure's current input schema."""
    paths = document["paths"]
    generic_path = next(
        path
        for path, item in paths.items()
        if item.get("post", {}).get("operationId") == "start_run"
    )
    generic = paths[generic_path]["post"]
    schemas = document["components"]["schemas"]
    per_procedure = {}
    for version in current_versions():
        procedure = version.procedure
        name = f"{procedure.public_id}_inputs"
        schemas[name] = inputs_component(version, name)
        operation = copy.deepcopy(generic)
        operation["operationId"] = f"start_run_{procedure.public_id}"
        operation["summary"] = f"Start a run of {procedure.name}"
        operation["description"] = (
            f"The body is the inputs of a run of version {version.number}, the current one, "
            "validated against this schema (422 lists every failing field). A newer version "
            "may change it. The run is executed by a worker; poll its `url`."
        )
        operation["parameters"] = [p for p in generic["parameters"] if p["name"] != "procedure_id"]
        operation["requestBody"] = {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            "required": True,
        }
        per_procedure[generic_path.replace("{procedure_id}", procedure.public_id)] = {
            "post": operation
        }
    ordered = {}
    for path, item in paths.items():
        ordered[path] = item
        if path == generic_path:
            ordered.update(per_procedure)
    document["paths"] = ordered
