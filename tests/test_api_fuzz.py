"""The API fuzzed from its own OpenAPI document (schemathesis): whatever is sent, never a 5xx,
and every answer matches the documented status codes, content types and schemas.

The document is read from the running application once the procedures exist, so each
procedure's start-run path carries its current input schema: bodies generated to fit it must
start a run (or be refused for the key's other environment), bodies generated to break it must
get a 4xx. The document itself is checked first: valid OpenAPI 3.1, every reference resolving.
"""

import json

import jsonschema
import pytest
import schemathesis
import yaml
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.definitions import OPENAPI_31

from procedures.demo import DEMO_DIR
from runs.api_keys import create_api_key
from runs.models import RunType
from runs.services import start_run
from tests.conftest import SIMPLE_DEFINITION, make_version

GENERIC_START_PATH = "/v1/procedures/{procedure_id}/{environment}"

# Inputs whose schema refers to itself: the references must follow it into the document.
REFERENCING_DEFINITION = {
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"cents": {"type": "integer", "minimum": 1, "maximum": 10**9}},
        "properties": {
            "amount": {"$ref": "#/$defs/cents"},
            "fees": {"type": "array", "maxItems": 3, "items": {"$ref": "#/$defs/cents"}},
            "note": {"type": "string", "maxLength": 40, "default": "none"},
        },
        "required": ["amount"],
        "additionalProperties": False,
    },
    "start": "done",
    "nodes": {"done": {"type": "output", "value": {"amount": "inputs.amount"}}},
}


def demo_version(name: str):
    """A demo procedure, as `manage.py seed_demo` loads it."""
    document = yaml.safe_load((DEMO_DIR / f"{name}.yaml").read_text())
    return make_version(json.loads(json.dumps(document["definition"])), name=document["name"])


@pytest.fixture
def known(db):
    """Real ids, so the fuzzer also reaches the code behind the 404s, and procedures whose
    input schemas use patterns, formats, enums, bounds and references."""
    version = make_version(SIMPLE_DEFINITION, name="Classify payment")
    versions = [
        version,
        demo_version("pay_invoice"),
        demo_version("close_account"),
        make_version(REFERENCING_DEFINITION, name="Pay fees"),
    ]
    run = start_run(
        version=version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type=RunType.API,
    )
    _, raw_key = create_api_key(name="Fuzzer", environment="sandbox")
    return {
        "procedure_id": version.procedure.public_id,
        "run_id": run.public_id,
        "key": raw_key,
        "versions": versions,
        "start_paths": {
            f"/v1/procedures/{v.procedure.public_id}/{{environment}}" for v in versions
        },
    }


# --- the document -----------------------------------------------------------------------------
def _references(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            elif key not in ("const", "enum", "default", "examples"):
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _resolve(document, reference: str):
    assert reference.startswith("#/"), reference
    target = document
    for part in reference[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def test_the_document_is_valid_openapi_3_1_with_every_reference_resolving(client, known):
    document = client.get("/v1/openapi.json").json()
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for reference in _references(document):
        _resolve(document, reference)


def test_each_procedure_has_a_start_run_path_whose_body_is_its_input_schema(client, known):
    document = client.get("/v1/openapi.json").json()
    assert set(document["paths"]) >= {GENERIC_START_PATH, *known["start_paths"]}
    generic = document["paths"][GENERIC_START_PATH]["post"]
    for version in known["versions"][:3]:  # the schemas without references
        public_id = version.procedure.public_id
        operation = document["paths"][f"/v1/procedures/{public_id}/{{environment}}"]["post"]
        assert operation["operationId"] == f"start_run_{public_id}"
        assert [p["name"] for p in operation["parameters"]] == ["environment", "Idempotency-Key"]
        assert operation["responses"] == generic["responses"]
        assert operation["security"] == generic["security"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert _resolve(document, body["$ref"]) == {
            "title": f"{version.procedure.name} inputs",
            **version.input_schema,
        }


def test_a_schema_with_references_validates_in_the_document_as_it_does_alone(client, known):
    document = client.get("/v1/openapi.json").json()
    version = known["versions"][3]
    operation = document["paths"][f"/v1/procedures/{version.procedure.public_id}/{{environment}}"]
    reference = operation["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "$schema" not in _resolve(document, reference)
    # Rooted at the document, as an OpenAPI client resolves the reference.
    in_document = jsonschema.Draft202012Validator(
        {"components": document["components"], "$ref": reference}
    )
    alone = jsonschema.Draft202012Validator(version.input_schema)
    for inputs in (
        {"amount": 5},
        {"amount": 5, "fees": [1, 2, 3], "note": "ok"},
        {"amount": 0},
        {"amount": 5, "fees": [1, 0]},
        {"amount": 5, "fees": [1, 2, 3, 4]},
        {"amount": 5, "other": 1},
        {},
    ):
        assert in_document.is_valid(inputs) == alone.is_valid(inputs), inputs
    assert not in_document.is_valid({"amount": 5, "fees": [1, 0]})


def test_a_new_version_changes_the_documented_schema(client, known):
    newer = make_version(
        {**SIMPLE_DEFINITION, "input_schema": {"type": "object", "required": ["reference"]}},
        name="Classify payment",
    )
    document = client.get("/v1/openapi.json").json()
    public_id = newer.procedure.public_id
    component = document["components"]["schemas"][f"{public_id}_inputs"]
    assert component["required"] == ["reference"]
    operation = document["paths"][f"/v1/procedures/{public_id}/{{environment}}"]["post"]
    assert f"version {newer.number}, the current one" in operation["description"]


@pytest.fixture(autouse=True)
def _keep_test_connection_open():
    # As Django's test client does: the WSGI handler must not close the test's connection
    # (and its transaction) at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# --- the fuzzer ------------------------------------------------------------------------------
@pytest.fixture
def api_schema(known, _keep_test_connection_open):
    """The document fetched from the running application, as a client would, once the
    procedures exist."""
    loaded = schemathesis.openapi.from_wsgi("/v1/openapi.json", WSGIHandler())
    # NUL cannot be stored in a PostgreSQL JSON column: such a body is a documented 400
    # (runs/api_auth.py), whatever the schema says about strings.
    loaded.config.generation.update(allow_x00=False)
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_lazy_schemas(request):
    # schemathesis 4.32's lazy schemas read and rename `node._nodeid`, which pytest 9.2 no
    # longer has (it keeps `_id`); they only use it to label each operation's report.
    request.node._nodeid = request.node.nodeid


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_answers_every_generated_request_as_documented(case, known):
    # Half the generated ids are swapped for real ones (decided by the generated value itself,
    # so hypothesis can still shrink a failure).
    for name in ("procedure_id", "run_id"):
        value = (case.path_parameters or {}).get(name)
        if value is not None and len(value) % 2 == 0:
            case.path_parameters[name] = known[name]
    # Valid data must be accepted on each procedure's own start-run path, whose body is the
    # procedure's schema. Elsewhere the document rightly cannot say everything: the generic
    # start-run body is any object (the procedure's schema may refuse it, 422), and a list
    # filter may name a procedure that does not exist or a cursor never issued.
    excluded = [] if case.operation.path in known["start_paths"] else [positive_data_acceptance]
    # Both documented headers carry the key: schemathesis also fills in X-API-Key, and a key
    # there that is not the Bearer one rightly fails the request (runs/api_auth.py).
    key = known["key"]
    case.call_and_validate(
        headers={"Authorization": f"Bearer {key}", "X-API-Key": key}, excluded_checks=excluded
    )
