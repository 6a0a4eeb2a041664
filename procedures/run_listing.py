"""What the Runs list shows of a run's inputs, and what its search matches: the listing.

A version's definition may declare `reference_fields`, the inputs a finance person looks a run
up by (an invoice number, a customer, a payee):

    reference_fields: [invoice_id, customer_id]

Each must be a declared input property. A run's listing is computed once, from the version's
definition and the run's inputs, when the run is created (runs.writer), and stored on the run's
row beside the inputs it derives from, so the list reads no inputs and search has a column to
index. The inputs are immutable, and so is the listing; the integrity check recomputes it here
and reports a row whose listing differs (runs.integrity).
"""

import unicodedata
from dataclasses import dataclass
from typing import Any

from procedures.money import currency_code, is_int
from procedures.money_schema import money_fields

REFERENCE_FIELDS = "reference_fields"
MAX_REFERENCE_FIELDS = 5
# Longer values are stored and matched by their first characters: a reference is a short code
# or a name, and the search column's index grows with what it holds.
MAX_REFERENCE_CHARS = 200
# Between two values in the search text: a character nobody types, so a search never matches
# across the end of one value and the start of the next.
VALUE_SEPARATOR = "\n"


@dataclass(frozen=True)
class Listing:
    references: dict[str, str]  # {input name: its value as text}, in the declared order
    search_text: str  # the values, normalised (see `normalise`), one per line
    amount_minor: int | None  # the money input's amount in minor units, or None
    amount_currency: str  # its ISO 4217 code, upper case ("" when there is no amount)


NO_LISTING = Listing(references={}, search_text="", amount_minor=None, amount_currency="")


def normalise(text: str) -> str:
    """How search text and a search query are compared: compatibility-normalised (a full-width
    "ＩＮＶ" is "INV"), case-folded, surrounding space removed."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def reference_fields(definition: Any) -> list[str]:
    fields = definition.get(REFERENCE_FIELDS) if isinstance(definition, dict) else None
    return [f for f in fields if isinstance(f, str)] if isinstance(fields, list) else []


def listing_of(definition: Any, inputs: Any) -> Listing:
    """The listing of a run of `definition` with `inputs` (a valid definition; any inputs)."""
    if not isinstance(inputs, dict):
        return NO_LISTING
    references = {}
    for name in reference_fields(definition):
        value = _reference_text(inputs.get(name))
        if value:
            references[name] = value
    amount, currency = None, ""
    schema = definition.get("input_schema") if isinstance(definition, dict) else None
    for name, currency_field in money_fields(schema).items():
        code = currency_code(inputs.get(currency_field))
        if is_int(inputs.get(name)) and code:
            amount, currency = inputs[name], code
            break
    search_text = VALUE_SEPARATOR.join(normalise(value) for value in references.values())
    return Listing(references, search_text, amount, currency)


def _reference_text(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()[:MAX_REFERENCE_CHARS]


def reference_fields_problems(definition: dict) -> list[str]:
    """What is wrong with a definition's `reference_fields`, in words an admin can act on."""
    if REFERENCE_FIELDS not in definition:
        return []
    fields = definition[REFERENCE_FIELDS]
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        return ["reference_fields must be a list of input names, e.g. [invoice_id, customer_id]"]
    schema = definition.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    properties = properties if isinstance(properties, dict) else {}
    problems = []
    if len(fields) > MAX_REFERENCE_FIELDS:
        problems.append(f"reference_fields lists at most {MAX_REFERENCE_FIELDS} inputs")
    for name in dict.fromkeys(f for f in fields if fields.count(f) > 1):
        problems.append(f"reference_fields lists '{name}' more than once")
    known = ", ".join(f"'{name}'" for name in properties) or "none"
    for name in dict.fromkeys(fields):
        if name not in properties:
            problems.append(
                f"reference_fields names '{name}', which is not an input; "
                f"input_schema's properties are: {known}"
            )
        elif _is_structured(properties[name]):
            problems.append(
                f"reference_fields names '{name}', an object or list input; a reference is a "
                "single value such as a string or a number"
            )
    return problems


def _is_structured(prop: Any) -> bool:
    types = prop.get("type") if isinstance(prop, dict) else None
    types = types if isinstance(types, list) else [types]
    return bool(types) and all(t in ("object", "array") for t in types)


def reference_titles(definition: Any) -> dict[str, str]:
    """{reference field: the label a person reads for it}: its input's `title`, else its name."""
    schema = definition.get("input_schema") if isinstance(definition, dict) else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    properties = properties if isinstance(properties, dict) else {}
    titles = {}
    for name in reference_fields(definition):
        prop = properties.get(name)
        title = prop.get("title") if isinstance(prop, dict) else None
        titles[name] = title if isinstance(title, str) and title else name.replace("_", " ")
    return titles
