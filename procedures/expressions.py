"""Safe expressions and input mappings, evaluated with simpleeval (never Python's eval).

An expression reads `inputs`, `steps.<node>.output` (and, on a review node's output, the
values after overrides) with dot or bracket access. Only dictionary keys can be reached:
attribute access on any Python object, method calls included, is refused.

A mapping is JSON whose string values are expressions; numbers, booleans, null, lists and
objects are kept, recursing into lists and objects. A literal string is written quoted:
`"currency": "'usd'"`.
"""

import ast
import threading
from decimal import Decimal
from functools import lru_cache

from simpleeval import EvalWithCompoundTypes, InvalidExpression

FUNCTIONS = {
    "abs": abs,
    "min": min,
    "max": max,
    "len": len,
    "round": round,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "sum": sum,
    "lower": lambda value: str(value).lower(),
    "upper": lambda value: str(value).upper(),
    "get": lambda mapping, key, default=None: (
        mapping.get(key, default) if isinstance(mapping, dict) else default
    ),
    "decimal": lambda value: float(Decimal(str(value))),
}


class ExpressionError(Exception):
    def __init__(self, expression: str, message: str):
        super().__init__(f"{message} (in expression `{expression}`)")
        self.expression = expression
        self.message = message


class _Evaluator(EvalWithCompoundTypes):
    # JSON's containers: what an expression's names (a run's inputs, its steps' outputs, all
    # decoded from JSON) are made of.
    _JSON_CONTAINERS = (dict, list)

    def _check_disallowed_items(self, item):
        # simpleeval checks every value an expression touches for a module or a forbidden
        # function, walking into containers. Here the names are JSON, which can hold neither,
        # and whatever an expression builds is checked element by element as each element is
        # evaluated; so a JSON container needs no walk. The walk re-read the whole `steps`
        # mapping at every `steps.<node>` reference: a third of the engine's expression time.
        if type(item) not in self._JSON_CONTAINERS:
            super()._check_disallowed_items(item)

    def _eval_attribute(self, node):
        value = self._eval(node.value)
        if isinstance(value, dict):
            if node.attr in value:
                return value[node.attr]
            raise KeyError(node.attr)
        raise InvalidExpression(f"'{node.attr}' cannot be read from a {type(value).__name__}")


def parse_error(expression: str) -> str | None:
    """The reason `expression` does not parse, or None when it does."""
    if not isinstance(expression, str) or not expression.strip():
        return "an expression must be a non-empty string"
    try:
        ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        return f"does not parse: {exc.msg}"
    return None


@lru_cache(maxsize=4096)
def _parsed(expression: str):
    """(problem, syntax tree) of an expression string, parsed once per process: the engine
    evaluates the same few expressions of immutable versions for every run."""
    problem = parse_error(expression)
    return problem, None if problem else _Evaluator.parse(expression)


_evaluators = threading.local()


def _evaluator(context: dict) -> _Evaluator:
    """This thread's evaluator, reading `context`: setting one up builds simpleeval's tables of
    operators and node handlers, and the engine evaluates ~15 expressions per run."""
    evaluator = getattr(_evaluators, "evaluator", None)
    if evaluator is None:
        evaluator = _evaluators.evaluator = _Evaluator(names={}, functions=dict(FUNCTIONS))
    evaluator.names = context
    return evaluator


def evaluate(expression: str, context: dict):
    if isinstance(expression, str):
        problem, tree = _parsed(expression)
    else:
        problem, tree = parse_error(expression), None
    if problem:
        raise ExpressionError(str(expression), problem)
    evaluator = _evaluator(context)
    try:
        return evaluator.eval(expression.strip(), previously_parsed=tree)
    except KeyError as exc:
        raise ExpressionError(expression, f"no value named {exc.args[0]!r}") from exc
    except (
        InvalidExpression,
        TypeError,
        ValueError,
        ZeroDivisionError,
        IndexError,
        AttributeError,
    ) as exc:
        raise ExpressionError(expression, str(exc)) from exc


def resolve(mapping, context: dict):
    """Evaluate every expression in a mapping (see the module docstring)."""
    if isinstance(mapping, str):
        return evaluate(mapping, context)
    if isinstance(mapping, dict):
        return {key: resolve(value, context) for key, value in mapping.items()}
    if isinstance(mapping, list):
        return [resolve(value, context) for value in mapping]
    return mapping


def expressions_in(mapping):
    """Every expression string inside a mapping, for validation."""
    if isinstance(mapping, str):
        yield mapping
    elif isinstance(mapping, dict):
        for value in mapping.values():
            yield from expressions_in(value)
    elif isinstance(mapping, list):
        for value in mapping:
            yield from expressions_in(value)
