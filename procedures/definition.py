"""Validation of a procedure definition (the JSON document of a ProcedureVersion).

`validate_definition` reports every problem it can find, each tied to the node it is about (or to
the definition as a whole), in words a finance-ops admin can act on. Nothing is executed: tool
inputs are checked against the tool's schema only where the value is known before a run (keys,
and literal values such as `250` or `"'usd'"`); expressions are parsed, not evaluated.
"""

import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from procedures.definition_checks import (
    is_int,
    is_number,
    literal_value,
    outcome_problem,
    schema_error,
    steps_read,
)
from procedures.definition_graph import reachable, strongly_connected, successors
from procedures.definition_review import REVIEW_OPTIONAL_KEYS, check_review_node
from procedures.expressions import expressions_in, parse_error
from procedures.money_schema import money_schema_problems
from procedures.node_types import NodeType
from procedures.run_listing import REFERENCE_FIELDS, reference_fields_problems
from procedures.tools import all_tools

# Per node type: (the keys it must have, the keys it may have).
NODE_KEYS = {
    NodeType.TOOL: ({"tool", "next"}, {"input", "retry"}),
    NodeType.CONDITION: ({"expression", "then", "else"}, set()),
    NodeType.HUMAN_REVIEW: ({"title", "show", "next"}, REVIEW_OPTIONAL_KEYS),
    NodeType.OUTPUT: ({"value"}, {"outcome"}),
    NodeType.FAIL: ({"reason"}, {"outcome"}),
}
# Keys every node may carry for people reading the definition.
COMMON_NODE_KEYS = {"type", "description"}
TOP_LEVEL_KEYS = {"input_schema", "start", "nodes", "description", REFERENCE_FIELDS}
TERMINAL_TYPES = {NodeType.OUTPUT, NodeType.FAIL}
RETRY_KEYS = {"max_attempts", "backoff_seconds", "max_backoff_seconds"}
MAX_ATTEMPTS = 10
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NODE_ID_MAX_CHARS = 100  # the steps' and review requests' node_id columns


@dataclass(frozen=True)
class DefinitionProblem:
    node: str | None  # the node id, or None for the definition as a whole
    message: str

    def __str__(self) -> str:
        return f"node '{self.node}': {self.message}" if self.node is not None else self.message


class DefinitionError(ValueError):
    def __init__(self, problems: list[DefinitionProblem]):
        self.problems = problems
        count = len(problems)
        lines = "\n".join(f"- {problem}" for problem in problems)
        super().__init__(f"the definition has {count} problem{'s' if count != 1 else ''}:\n{lines}")


def check_definition(definition: Any) -> None:
    """Raise DefinitionError listing every problem, or return when the definition is valid."""
    problems = validate_definition(definition)
    if problems:
        raise DefinitionError(problems)


def clean_version_definition(definition: Any) -> None:
    """For ProcedureVersion.clean() and admin forms: a ValidationError with every message."""
    problems = validate_definition(definition)
    if problems:
        raise ValidationError(
            [ValidationError(str(problem), code="invalid_definition") for problem in problems]
        )


def validate_definition(definition: Any) -> list[DefinitionProblem]:
    return _Validator(definition).problems()


class _Validator:
    def __init__(self, definition: Any):
        self.definition = definition
        self.found: list[DefinitionProblem] = []

    def problems(self) -> list[DefinitionProblem]:
        definition = self.definition
        if not isinstance(definition, dict):
            self.add(
                None, "the definition must be a JSON object with input_schema, start and nodes"
            )
            return self.found
        for key in sorted(set(definition) - TOP_LEVEL_KEYS, key=str):
            self.add(None, f"unknown top-level key '{key}'; expected input_schema, start, nodes")
        self.check_input_schema(definition.get("input_schema"), "input_schema" in definition)
        for problem in reference_fields_problems(definition):
            self.add(None, problem)

        nodes = definition.get("nodes")
        if "nodes" not in definition:
            self.add(None, "the definition has no 'nodes'")
            nodes = {}
        elif not isinstance(nodes, dict) or not nodes:
            self.add(None, "'nodes' must be an object with at least one node")
            nodes = {}
        self.nodes = nodes

        start = definition.get("start")
        if "start" not in definition:
            self.add(None, "the definition has no 'start' node")
        elif not isinstance(start, str) or start not in nodes:
            self.add(None, f"start names no node: {start!r}; {self.known_nodes()}")

        tools = all_tools()
        for node_id, node in nodes.items():
            self.check_node(node_id, node, tools)
        self.check_graph(start if isinstance(start, str) and start in nodes else None)
        return self.found

    def add(self, node: str | None, message: str) -> None:
        self.found.append(DefinitionProblem(node=node, message=message))

    def known_nodes(self) -> str:
        names = ", ".join(f"'{name}'" for name in self.nodes) or "none"
        return f"nodes are: {names}"

    # --- the run inputs --------------------------------------------------------------------

    def check_input_schema(self, schema: Any, present: bool) -> None:
        # Absent means "any object" (ProcedureVersion.input_schema's default).
        if not present:
            return
        if not isinstance(schema, dict):
            self.add(None, "input_schema must be a JSON Schema object")
            return
        error = schema_error(schema)
        if error:
            self.add(None, f"input_schema is not a valid JSON Schema: {error}")
        if schema.get("type") != "object":
            self.add(None, 'input_schema must describe an object (\'"type": "object"\')')
        for problem in money_schema_problems(schema):
            self.add(None, problem)

    # --- one node -----------------------------------------------------------------------

    def check_node(self, node_id: Any, node: Any, tools: dict) -> None:
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            self.add(
                str(node_id),
                "a node id must start with a letter or underscore and hold only letters, "
                "digits and underscores (expressions read it as steps.<id>.output)",
            )
        elif len(node_id) > NODE_ID_MAX_CHARS:
            self.add(
                node_id[:40] + "…", f"a node id must be at most {NODE_ID_MAX_CHARS} characters"
            )
        if not isinstance(node, dict):
            self.add(node_id, "a node must be an object with a 'type'")
            return
        node_type = node.get("type")
        if node_type not in NODE_KEYS:
            known = ", ".join(NodeType.values)
            what = f"unknown type {node_type!r}" if "type" in node else "no 'type'"
            self.add(node_id, f"{what}; a node type is one of: {known}")
            return
        required, optional = NODE_KEYS[node_type]
        for key in sorted(required - set(node)):
            self.add(node_id, f"a {node_type} node needs '{key}'")
        allowed = required | optional | COMMON_NODE_KEYS
        for key in sorted(set(node) - allowed, key=str):
            self.add(
                node_id,
                f"unknown key '{key}' for a {node_type} node; it takes: "
                + ", ".join(sorted(required | optional)),
            )
        for key in ("next", "then", "else"):
            if key in node and key in required:
                self.check_reference(node_id, key, node[key])
        check_type = {
            NodeType.TOOL: self.check_tool,
            NodeType.CONDITION: self.check_condition,
            NodeType.HUMAN_REVIEW: self.check_human_review,
            NodeType.OUTPUT: self.check_output,
            NodeType.FAIL: self.check_fail,
        }[node_type]
        check_type(node_id, node, tools)

    def check_reference(self, node_id: str, key: str, target: Any) -> None:
        if not isinstance(target, str) or target not in self.nodes:
            self.add(node_id, f"'{key}' names no node: {target!r}; {self.known_nodes()}")

    def check_tool(self, node_id: str, node: dict, tools: dict) -> None:
        mapping = node.get("input", {})
        if not isinstance(mapping, dict):
            self.add(node_id, "'input' must be an object mapping each tool input to an expression")
            mapping = None
        else:
            self.check_expressions(node_id, "input", mapping)
        if "retry" in node:
            self.check_retry(node_id, node["retry"])
        name = node.get("tool")
        if "tool" not in node:
            return
        tool = tools.get(name) if isinstance(name, str) else None
        if tool is None:
            self.add(
                node_id,
                f"tool {name!r} does not exist; known tools: {', '.join(tools) or 'none'}",
            )
            return
        if mapping is not None:
            self.check_tool_input(node_id, name, tool.input_schema, mapping)

    def check_tool_input(self, node_id: str, name: str, schema: dict, mapping: dict) -> None:
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in mapping:
                self.add(node_id, f"tool '{name}' needs input '{key}', which is not mapped")
        if schema.get("additionalProperties") is False:
            for key in mapping:
                if key not in properties:
                    known = ", ".join(properties) or "none"
                    self.add(
                        node_id, f"tool '{name}' has no input '{key}'; its inputs are: {known}"
                    )
        for key, value in mapping.items():
            if key not in properties:
                continue
            is_literal, literal = literal_value(value)
            if not is_literal:
                continue
            error = best_match(Draft202012Validator(properties[key]).iter_errors(literal))
            if error is not None:
                self.add(
                    node_id,
                    f"input '{key}' of tool '{name}' has the fixed value {literal!r}, which the "
                    f"tool does not accept: {error.message}",
                )

    def check_retry(self, node_id: str, retry: Any) -> None:
        if not isinstance(retry, dict):
            self.add(node_id, "'retry' must be an object with max_attempts and backoff_seconds")
            return
        for key in sorted(set(retry) - RETRY_KEYS, key=str):
            self.add(
                node_id, f"unknown retry setting '{key}'; use: {', '.join(sorted(RETRY_KEYS))}"
            )
        attempts = retry.get("max_attempts")
        if "max_attempts" in retry and not (is_int(attempts) and 1 <= attempts <= MAX_ATTEMPTS):
            self.add(
                node_id,
                f"retry max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}, "
                f"not {attempts!r}",
            )
        for key in ("backoff_seconds", "max_backoff_seconds"):
            if key in retry and not (is_number(retry[key]) and retry[key] > 0):
                self.add(node_id, f"retry {key} must be a positive number, not {retry[key]!r}")
        backoff, ceiling = retry.get("backoff_seconds"), retry.get("max_backoff_seconds")
        if is_number(backoff) and is_number(ceiling) and 0 < ceiling < backoff:
            self.add(
                node_id,
                f"retry max_backoff_seconds ({ceiling!r}) is below backoff_seconds ({backoff!r})",
            )

    def check_condition(self, node_id: str, node: dict, tools: dict) -> None:
        if "expression" in node:
            expression = node["expression"]
            if not isinstance(expression, str):
                self.add(node_id, f"the expression must be text, not {expression!r}")
            else:
                self.check_expressions(node_id, "expression", expression)

    def check_human_review(self, node_id: str, node: dict, tools: dict) -> None:
        check_review_node(
            node,
            add=lambda message: self.add(node_id, message),
            check_expressions=lambda where, mapping: self.check_expressions(
                node_id, where, mapping
            ),
        )

    def check_output(self, node_id: str, node: dict, tools: dict) -> None:
        if "value" in node:
            self.check_expressions(node_id, "value", node["value"])
        self.check_outcome(node_id, node)

    def check_fail(self, node_id: str, node: dict, tools: dict) -> None:
        if "reason" in node and not (isinstance(node["reason"], str) and node["reason"].strip()):
            self.add(node_id, "the fail 'reason' must be non-empty text")
        self.check_outcome(node_id, node)

    def check_outcome(self, node_id: str, node: dict) -> None:
        # A business answer (a declined credit line) that the run records as such, not as a
        # technical failure: runs.engine.nodes.fail and .output.
        problem = outcome_problem(node["outcome"]) if "outcome" in node else None
        if problem:
            self.add(node_id, problem)

    def check_expressions(self, node_id: str, where: str, mapping: Any) -> None:
        for expression in expressions_in(mapping):
            problem = parse_error(expression)
            if problem:
                self.add(node_id, f"expression `{expression}` in {where} {problem}")
                continue
            for step in steps_read(expression):
                if step not in self.nodes:
                    self.add(
                        node_id,
                        f"expression `{expression}` in {where} reads steps.{step}, but there is "
                        f"no node '{step}'",
                    )

    # --- the graph ----------------------------------------------------------------------

    def check_graph(self, start: str | None) -> None:
        edges = {node_id: successors(node, self.nodes) for node_id, node in self.nodes.items()}
        if start is not None:
            reached = reachable([start], edges)
            for node_id in self.nodes:
                if node_id not in reached:
                    self.add(node_id, f"unreachable: no path leads here from start '{start}'")

        reverse: dict[str, list[str]] = {node_id: [] for node_id in self.nodes}
        for source, targets in edges.items():
            for target in targets:
                reverse[target].append(source)
        terminals = [
            node_id
            for node_id, node in self.nodes.items()
            if isinstance(node, dict) and node.get("type") in TERMINAL_TYPES
        ]
        can_finish = reachable(terminals, reverse)
        for component in strongly_connected(edges):
            first = component[0]
            is_cycle = len(component) > 1 or first in edges[first]
            if is_cycle and not can_finish & set(component):
                loop = " → ".join(f"'{node_id}'" for node_id in [*component, first])
                self.add(
                    first,
                    f"nodes {loop} form a loop with no way out to an output or fail node",
                )
