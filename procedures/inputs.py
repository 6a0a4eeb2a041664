"""Validation of run inputs against a version's input JSON Schema."""

import json
from functools import lru_cache

from jsonschema import Draft202012Validator


def input_errors(schema: dict, inputs) -> list[dict]:
    """Every failing field as {"field": "a.b", "message": ...}, in document order."""
    validator = compiled_validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(inputs), key=lambda e: list(map(str, e.path))):
        field = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "required":
            # The missing key is named in the message, not in the path.
            missing = error.message.split("'")[1] if "'" in error.message else ""
            field = ".".join(filter(None, [field, missing]))
            message = "This field is required."
        elif error.validator == "additionalProperties":
            message = error.message
        else:
            message = error.message
        problems.append({"field": field or "(inputs)", "message": message})
    return problems


def compiled_validator(schema: dict) -> Draft202012Validator:
    """The validator of `schema`, built once per process for each distinct schema.

    Building one costs more than validating small inputs with it, and every run start
    validates. The key is the schema's JSON text, so an equal schema shares the validator and a
    changed one (a new version) is never answered by an old one. Key order is kept, not sorted:
    it decides the order in which errors are found. The validator is built from that text, a
    copy nobody else holds.
    """
    return _validator(json.dumps(schema, separators=(",", ":")))


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(
        json.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
