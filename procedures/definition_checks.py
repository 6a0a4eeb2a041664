"""Checks on the values inside a definition: literals, the steps an expression reads, schemas.

None of them runs anything: a literal is read with `ast.literal_eval`, an expression is parsed and
walked, a JSON Schema is checked against its meta-schema.
"""

import ast
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
