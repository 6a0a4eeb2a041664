"""Which values are money: the input schema's annotation, and amounts in recorded JSON.

An input JSON Schema marks an amount with `"x-rapidfolio-money": {"currency_field": "<name>"}` on
an integer property of minor units; the named property holds the ISO 4217 code. The definition
validator checks the annotation with `money_schema_problems`. Recorded JSON has no schema, so its
amounts are recognised by shape (`recorded_money`). Formatting and parsing: procedures/money.py.
"""

import re

from procedures.money import ANNOTATION, CURRENCY_PATTERNS, Money, currency_code, is_int

# --- which values are money -----------------------------------------------------------------

# Recorded JSON (a step's input and output, a review's shown values) has no schema; an amount is
# recognised by the shape integrations give it: an integer `amount` or `*_amount` beside a
# `currency` holding an ISO 4217 code, in the same object (Stripe, the bank, our simulators).
AMOUNT_KEY = re.compile(r"amount|.+_amount")
MAX_RECORDED_AMOUNTS = 12
_INPUT_READ = re.compile(
    r"\s*inputs\s*(?:\.\s*(?P<attr>[A-Za-z_]\w*)|\[\s*(?P<q>['\"])(?P<key>[^'\"]+)(?P=q)\s*\])\s*"
)


def money_fields(schema) -> dict[str, str]:
    """{amount property: its currency property} for an object schema's annotated properties."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    fields = {}
    for name, prop in (properties if isinstance(properties, dict) else {}).items():
        spec = prop.get(ANNOTATION) if isinstance(prop, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("currency_field"), str):
            fields[name] = spec["currency_field"]
    return fields


def money_in(values, schema) -> dict[str, Money]:
    """The annotated amounts among `values` whose currency field holds a known code."""
    found = {}
    if not isinstance(values, dict):
        return found
    for name, currency_field in money_fields(schema).items():
        amount, code = values.get(name), currency_code(values.get(currency_field))
        if is_int(amount) and code:
            found[name] = Money(amount, code)
    return found


def recorded_money(value, path: str = "") -> list[tuple[str, Money]]:
    """The amounts in recorded JSON, by shape (see AMOUNT_KEY), each with its path ("a.amount")."""
    found: list[tuple[str, Money]] = []
    if not isinstance(value, dict | list):
        return found
    items = value.items() if isinstance(value, dict) else enumerate(value)
    code = currency_code(value.get("currency")) if isinstance(value, dict) else None
    for key, item in items:
        where = f"{path}[{key}]" if isinstance(value, list) else f"{path}.{key}".lstrip(".")
        if code and is_int(item) and AMOUNT_KEY.fullmatch(str(key)):
            found.append((where, Money(item, code)))
        elif isinstance(item, dict | list):
            found.extend(recorded_money(item, where))
    return found[:MAX_RECORDED_AMOUNTS]


def shown_money(definition, node_id: str, shown_values, inputs) -> dict[str, Money]:
    """The values a review shows that are money, by name.

    A value read straight from a money input (`amount: inputs.amount`) is money in the run's
    currency for that input; besides those, amounts recorded beside a `currency` among the shown
    values (`amount: steps.quote.output.amount` next to `currency: ...`).
    """
    if not isinstance(shown_values, dict):
        return {}
    definition = definition if isinstance(definition, dict) else {}
    node = (definition.get("nodes") or {}).get(node_id)
    show = node.get("show") if isinstance(node, dict) else None
    money_inputs = money_fields(definition.get("input_schema"))
    inputs = inputs if isinstance(inputs, dict) else {}
    found = {}
    for name, expression in (show if isinstance(show, dict) else {}).items():
        read = _INPUT_READ.fullmatch(expression) if isinstance(expression, str) else None
        source = read and (read.group("attr") or read.group("key"))
        if source in money_inputs:
            code = currency_code(inputs.get(money_inputs[source]))
            if code and is_int(shown_values.get(name)):
                found[name] = Money(shown_values[name], code)
    for path, money in recorded_money(shown_values):
        found.setdefault(path, money)
    return found


# --- the annotation, checked with the definition --------------------------------------------


def money_schema_problems(schema) -> list[str]:
    """What is wrong with an input schema's money annotations, for the definition validator."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    properties = properties if isinstance(properties, dict) else {}
    problems = []
    for name, prop in properties.items():
        if isinstance(prop, dict) and ANNOTATION in prop:
            problems.extend(_annotation_problems(name, prop, schema))
    for where in _nested_annotations(schema):
        problems.append(
            f"input_schema: '{ANNOTATION}' at {where} has no effect; money is marked on "
            "top-level inputs only"
        )
    return problems


def _annotation_problems(name: str, prop: dict, schema: dict) -> list[str]:
    spec = prop[ANNOTATION]
    field = spec.get("currency_field") if isinstance(spec, dict) else None
    if not isinstance(field, str) or set(spec) != {"currency_field"}:
        return [
            f"input '{name}': {ANNOTATION} must be "
            '{"currency_field": "<the input that holds its ISO 4217 code>"}'
        ]
    problems = []
    kinds = prop.get("type") if isinstance(prop.get("type"), list) else [prop.get("type")]
    if "integer" not in kinds or set(kinds) - {"integer", "null"}:
        problems.append(
            f"input '{name}' is money, so it must be an integer of minor units "
            '(\'"type": "integer"\'; 2400000 is USD 24,000.00)'
        )
    currency = (schema.get("properties") or {}).get(field)
    if not isinstance(currency, dict):
        known = ", ".join(f"'{key}'" for key in schema.get("properties") or {})
        return [
            *problems,
            f"input '{name}' names '{field}' as its currency, but there is no "
            f"input '{field}'; inputs are: {known}",
        ]
    problems.extend(_currency_problems(name, field, currency))
    required = set(schema.get("required") or [])
    if name in required and field not in required and "default" not in currency:
        problems.append(
            f"input '{name}' is required but its currency '{field}' is neither required nor "
            "given a default, so the amount could not be read"
        )
    return problems


def _currency_problems(name: str, field: str, currency: dict) -> list[str]:
    limited = (
        f"the currency input '{field}' of '{name}' must be a string limited to ISO 4217 codes: "
        'an "enum" of codes (e.g. ["USD", "EUR"]) or the "pattern" ' + " / ".join(CURRENCY_PATTERNS)
    )
    values = currency.get("enum", [currency["const"]] if "const" in currency else None)
    if values is not None and not isinstance(values, list):
        return [limited]
    if currency.get("type", "string") != "string" or (
        values is None and currency.get("pattern") not in CURRENCY_PATTERNS
    ):
        return [limited]
    unknown = [value for value in values or [] if currency_code(value) is None]
    if unknown:
        listed = ", ".join(repr(value) for value in unknown)
        return [f"the currency input '{field}' of '{name}' offers {listed}, not ISO 4217 codes"]
    return []


def _nested_annotations(schema, where: str = "") -> list[str]:
    found = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            path = f"{where}/{key}"
            top_level = where.count("/") == 2 and where.startswith("/properties/")
            if key == ANNOTATION and not top_level:
                found.append(path.lstrip("/") or "the schema's root")
            elif key != ANNOTATION:
                found.extend(_nested_annotations(value, path))
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found.extend(_nested_annotations(value, f"{where}/{index}"))
    return found
