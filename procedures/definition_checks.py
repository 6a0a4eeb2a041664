"""Checks on the values inside a definition: literals, the steps an expression reads, schemas.

None of them runs anything: a literal is read with `ast.literal_eval`, an expression is parsed and
walked, a JSON Schema is checked against its meta-schema.
"""

import ast
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def literal_value(value: Any) -> tuple[bool, Any]:
    """(True, value) when a mapping value is known before the run, else (False, None)."""
    if isinstance(value, str):
        try:
            return True, ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return False, None
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            known, result[key] = literal_value(item)
            if not known:
                return False, None
        return True, result
    if isinstance(value, list):
        items = [literal_value(item) for item in value]
        if not all(known for known, _ in items):
            return False, None
        return True, [item for _, item in items]
    return True, value


def steps_read(expression: str) -> set[str]:
    """The node ids an expression reads as `steps.<id>` or `steps['<id>']`."""
    read = set()
    for node in ast.walk(ast.parse(expression.strip(), mode="eval")):
        if isinstance(node, ast.Attribute) and _is_steps(node.value):
            read.add(node.attr)
        elif (
            isinstance(node, ast.Subscript)
            and _is_steps(node.value)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            read.add(node.slice.value)
    return read


def _is_steps(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "steps"


def schema_error(schema: dict) -> str | None:
    """Why a JSON Schema is invalid (with where, when known), or None when it is valid."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        return f"{exc.message}" + (f" (at {where})" if where else "")
    return None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_DURATION_PART = re.compile(r"(\d+)\s*([dhms])")
_DURATION_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def duration_seconds(value: Any) -> int | None:
    """A duration as written in a definition ("24h", "1d 12h", "90m", or whole seconds), in
    seconds; None when it is not one."""
    if is_int(value):
        return value if value > 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        return None
    seconds = sum(int(number) * _DURATION_SECONDS[unit] for number, unit in parts)
    return seconds or None


# An overridable field written out in full; a bare JSON Schema is the short form.
OVERRIDE_KEYS = {"schema", "direction", "max_change_percent"}
DIRECTIONS = ("decrease", "increase", "any")


def override_spec(spec: Any) -> dict:
    """{schema, direction, max_change_percent} of an overridable field, from either form: the
    full one, or a bare JSON Schema (any direction, no bound)."""
    if isinstance(spec, dict) and "schema" in spec:
        return {
            "schema": spec["schema"],
            "direction": spec.get("direction", "any"),
            "max_change_percent": spec.get("max_change_percent"),
        }
    return {"schema": spec, "direction": "any", "max_change_percent": None}


# A business outcome (`outcome: declined` on a fail or output node): a short slug that the run
# records and the pages show as words ("not_eligible" reads "Not eligible"). It fits the run's
# outcome column, and it may not be a word the run's status or failure kind already uses, so a
# "Declined" badge never reads like a technical failure and a "failed" outcome cannot pass as one.
OUTCOME = re.compile(r"^[a-z][a-z0-9_]*$")
OUTCOME_MAX_CHARS = 50
RESERVED_OUTCOMES = frozenset(
    {"pending", "running", "awaiting_review", "completed", "failed", "cancelled"}
    | {"transient", "permanent", "business"}
)


def outcome_problem(value: Any) -> str | None:
    """Why `value` cannot be a node's business outcome, or None when it can."""
    example = "such as declined, rejected or not_eligible"
    if not isinstance(value, str) or not OUTCOME.match(value):
        return (
            f"'outcome' must be a short lower-case word {example} (letters, digits and "
            f"underscores, starting with a letter), not {value!r}"
        )
    if len(value) > OUTCOME_MAX_CHARS:
        return f"'outcome' must be at most {OUTCOME_MAX_CHARS} characters"
    if value in RESERVED_OUTCOMES:
        return (
            f"'outcome' {value!r} is a run status or failure kind already; name the business "
            f"answer instead, {example}"
        )
    return None
