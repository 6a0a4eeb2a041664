"""Validation of run inputs against a version's input JSON Schema."""

from jsonschema import Draft202012Validator


def input_errors(schema: dict, inputs) -> list[dict]:
    """Every failing field as {"field": "a.b", "message": ...}, in document order."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
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
