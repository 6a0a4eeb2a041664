"""Overrides: what a reviewer changes before approving, checked against each field's schema
and policy before anything is recorded.

A field's policy (from the definition, pinned in the request's overridable_fields) says which
way it may move from the value under review (`direction`: decrease, increase or any) and how
far from the value the run reached the review with (`max_change_percent`). Every problem is
reported beside its field; a single one refuses the whole decision.
"""

from decimal import Decimal
from fractions import Fraction

from procedures.inputs import input_errors
from reviews.amounts import show_value
from reviews.errors import InvalidOverrides
from reviews.state import ReviewState


def check_overrides(state: ReviewState, submitted: dict | None) -> list[dict]:
    """[{field, before, after}] for the fields the reviewer changed, in the node's order;
    raises InvalidOverrides with [{field, message}] when any is not allowed."""
    submitted = submitted or {}
    fields = {item["name"]: item for item in state.request.overridable_fields}
    current = state.values
    problems = []
    for name in submitted:
        if name not in fields:
            problems.append({"field": name, "message": "This field cannot be overridden."})
    changes = []
    for name, item in fields.items():
        if name not in submitted:
            continue
        value = submitted[name]
        errors = [p["message"] for p in input_errors(item.get("schema") or {}, value)]
        if not errors and value != current.get(name):
            errors = _policy_problems(state, item, current.get(name), value)
            changes.append({"field": name, "before": current.get(name), "after": value})
        problems.extend({"field": name, "message": message} for message in errors)
    if problems:
        raise InvalidOverrides(
            "The overrides are not allowed: "
            + "; ".join(f"{p['field']}: {p['message']}" for p in problems),
            details=problems,
        )
    return changes


def _policy_problems(state: ReviewState, item: dict, before, after) -> list[str]:
    name = item["name"]
    if not state.may_override:
        first = state.approvals[0].decider_label
        return [
            f"{first} approved these values; a further approval confirms them as they are "
            "(reject the run to stop it)."
        ]
    direction = item.get("direction", "any")
    bound = item.get("max_change_percent")
    if direction == "any" and bound is None:
        return []
    if not (is_amount(before) and is_amount(after)):
        return [f"{name} must stay a number to be changed within its policy."]

    def shown(value):
        return show_value(state, name, value)

    problems = []
    if direction == "decrease" and after > before:
        problems.append(f"You may only lower {name} from {shown(before)}, not raise it.")
    if direction == "increase" and after < before:
        problems.append(f"You may only raise {name} from {shown(before)}, not lower it.")
    original = (state.request.shown_values or {}).get(name)
    if bound is not None and is_amount(original):
        change = _percent(original, after)
        if change is None:
            problems.append(
                f"{name} may move at most {bound:g} % from {shown(original)}: it cannot change."
            )
        elif change > Fraction(Decimal(str(bound))):
            problems.append(
                f"{name} may move at most {bound:g} % from {shown(original)}; "
                f"{shown(after)} is {float(change):.1f} % away."
            )
    return problems


def is_amount(value) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _percent(original, after) -> Fraction | None:
    """|after - original| as a percentage of |original|; None when original is zero."""
    if not original:
        return None
    change = Fraction(Decimal(str(after))) - Fraction(Decimal(str(original)))
    return abs(change) * 100 / abs(Fraction(Decimal(str(original))))
