"""The human_review node's part of definition validation: what reviewers are shown, what they
may change and within which policy, how many must approve and who, and by when.

    approve_payment:
      type: human_review
      title: Approve invoice payment
      show: {invoice: inputs.invoice_id, customer: inputs.customer_id, amount: inputs.amount,
             currency: inputs.currency}
      payment: {amount: amount, payee: customer}   # which shown fields these are
      overridable:
        amount: {schema: {type: integer, minimum: 1}, direction: decrease, max_change_percent: 50}
      groups: [Payment approvers]             # or reviewer_group: Payment approvers
      approvals: "2 if inputs.amount > 5000000 else 1"   # or a whole number
      timeout: 24h                            # then on_timeout: reject (the default) ...
      on_timeout: escalate                    # ... or escalate_to another group,
      escalate_to: Finance managers           # which has escalation_timeout (default: timeout)
      confirm_above: 1000000                  # minor units of payment.amount
      next: charge
"""

from collections.abc import Callable
from typing import Any

from procedures.definition_checks import (
    DIRECTIONS,
    OVERRIDE_KEYS,
    duration_seconds,
    is_int,
    is_number,
    schema_error,
)

REVIEW_OPTIONAL_KEYS = {
    "instructions",
    "overridable",
    "reviewer_group",
    "groups",
    "approvals",
    "timeout",
    "on_timeout",
    "escalate_to",
    "escalation_timeout",
    "confirm_above",
    "payment",
}
MAX_APPROVALS = 10
MIN_TIMEOUT_SECONDS = 60
MAX_TIMEOUT_SECONDS = 90 * 86400
ON_TIMEOUT = ("reject", "escalate")
PAYMENT_KEYS = ("amount", "payee")
NUMERIC_TYPES = ("integer", "number")
# The review request's columns hold these (reviews.models.ReviewRequest): a longer text would
# pass here and fail at the review node, mid-run, as a database error.
TITLE_MAX_CHARS = 300
GROUP_MAX_CHARS = 150

Add = Callable[[str], None]


def check_review_node(node: dict, add: Add, check_expressions: Callable[[str, Any], None]):
    """Report each problem of a human_review node through `add` (its message)."""
    if "title" in node and not (isinstance(node["title"], str) and node["title"].strip()):
        add("the review 'title' must be non-empty text")
    elif "title" in node and len(node["title"]) > TITLE_MAX_CHARS:
        add(f"the review 'title' must be at most {TITLE_MAX_CHARS} characters")
    for key in ("instructions", "reviewer_group"):
        if key in node and not isinstance(node[key], str):
            add(f"'{key}' must be text")
    if (
        isinstance(node.get("reviewer_group"), str)
        and len(node["reviewer_group"]) > GROUP_MAX_CHARS
    ):
        add(f"'reviewer_group' must be at most {GROUP_MAX_CHARS} characters")
    show = node.get("show")
    if "show" in node:
        if not isinstance(show, dict) or not show:
            add("'show' must be an object mapping each shown field to a value")
            show = None
        else:
            check_expressions("show", show)
    shown = set(show) if isinstance(show, dict) else None
    _check_overridable(node.get("overridable", {}), shown, add)
    _check_groups(node, add)
    _check_approvals(node, add, check_expressions)
    _check_deadline(node, add)
    _check_payment(node, shown, add)


def _check_overridable(overridable: Any, shown: set | None, add: Add) -> None:
    if not isinstance(overridable, dict):
        add("'overridable' must be an object mapping field names to JSON Schemas")
        return
    for field, spec in overridable.items():
        if shown is not None and field not in shown:
            add(
                f"overridable field '{field}' is not in 'show'; reviewers can only change "
                "values they are shown"
            )
        if isinstance(spec, dict) and "schema" in spec:
            _check_override_policy(field, spec, add)
            spec = spec["schema"]
        if not isinstance(spec, dict):
            add(f"overridable field '{field}' needs a JSON Schema object")
            continue
        error = schema_error(spec)
        if error:
            add(f"overridable field '{field}' has an invalid JSON Schema: {error}")


def _check_override_policy(field: str, spec: dict, add: Add) -> None:
    for key in sorted(set(spec) - OVERRIDE_KEYS, key=str):
        add(
            f"unknown key '{key}' for overridable field '{field}'; it takes: "
            + ", ".join(sorted(OVERRIDE_KEYS))
        )
    direction = spec.get("direction", "any")
    if direction not in DIRECTIONS:
        add(
            f"overridable field '{field}' has direction {direction!r}; use one of: "
            + ", ".join(DIRECTIONS)
        )
    bound = spec.get("max_change_percent")
    if bound is not None and not (is_number(bound) and bound > 0):
        add(
            f"overridable field '{field}': max_change_percent must be a positive number, "
            f"not {bound!r}"
        )
    schema = spec.get("schema")
    numeric = isinstance(schema, dict) and schema.get("type") in NUMERIC_TYPES
    if (direction != "any" or bound is not None) and not numeric:
        add(
            f"overridable field '{field}': a direction or max_change_percent needs a number "
            "(its schema's type must be integer or number)"
        )


def _check_groups(node: dict, add: Add) -> None:
    if "groups" not in node:
        return
    groups = node["groups"]
    if "reviewer_group" in node:
        add("give either 'reviewer_group' or 'groups', not both")
    if not (
        isinstance(groups, list)
        and groups
        and all(isinstance(name, str) and name.strip() for name in groups)
    ):
        add("'groups' must be a non-empty list of group names")
    elif len(set(groups)) != len(groups):
        add("'groups' names a group twice")


def _check_approvals(node: dict, add: Add, check_expressions) -> None:
    if "approvals" not in node:
        return
    approvals = node["approvals"]
    if isinstance(approvals, str):
        # An expression over the inputs and earlier steps, evaluated when the run gets here.
        check_expressions("approvals", approvals)
    elif not (is_int(approvals) and 1 <= approvals <= MAX_APPROVALS):
        add(
            f"'approvals' must be a whole number from 1 to {MAX_APPROVALS} (or an expression "
            f"giving one), not {approvals!r}"
        )


def _check_duration(node: dict, key: str, add: Add) -> None:
    seconds = duration_seconds(node[key])
    if seconds is None:
        add(f"'{key}' must be a duration such as 24h, 90m, 2d or 1d 12h, not {node[key]!r}")
    elif not MIN_TIMEOUT_SECONDS <= seconds <= MAX_TIMEOUT_SECONDS:
        add(f"'{key}' must be from 1 minute to 90 days, not {node[key]!r}")


def _check_deadline(node: dict, add: Add) -> None:
    if "timeout" in node:
        _check_duration(node, "timeout", add)
    on_timeout = node.get("on_timeout", "reject")
    if "on_timeout" in node:
        if on_timeout not in ON_TIMEOUT:
            add(f"'on_timeout' must be reject or escalate, not {on_timeout!r}")
        if "timeout" not in node:
            add("'on_timeout' needs a 'timeout'")
    escalates = on_timeout == "escalate"
    if escalates and "escalate_to" not in node:
        add("'on_timeout: escalate' needs 'escalate_to', the group that decides after it")
    if "escalate_to" in node:
        target = node["escalate_to"]
        if not escalates:
            add("'escalate_to' is only used with 'on_timeout: escalate'")
        if not (isinstance(target, str) and target.strip()):
            add("'escalate_to' must be a group name")
        elif target in _groups_of(node):
            add(f"'escalate_to' must be another group than the reviewers' ({target})")
    if "escalation_timeout" in node:
        if not escalates:
            add("'escalation_timeout' is only used with 'on_timeout: escalate'")
        _check_duration(node, "escalation_timeout", add)


def _groups_of(node: dict) -> list:
    groups = node.get("groups")
    if isinstance(groups, list):
        return groups
    return [node["reviewer_group"]] if node.get("reviewer_group") else []


def _check_payment(node: dict, shown: set | None, add: Add) -> None:
    payment = node.get("payment")
    if "payment" in node:
        if not isinstance(payment, dict) or "amount" not in payment:
            add("'payment' must name the shown fields of the amount (and of the payee)")
            payment = None
        else:
            for key in sorted(set(payment) - set(PAYMENT_KEYS), key=str):
                add(f"unknown key '{key}' in 'payment'; it takes: {', '.join(PAYMENT_KEYS)}")
            for key, field in payment.items():
                if key in PAYMENT_KEYS and shown is not None and field not in shown:
                    add(f"payment {key} names {field!r}, which is not a field in 'show'")
    if "confirm_above" in node:
        threshold = node["confirm_above"]
        if not (is_int(threshold) and threshold >= 0):
            add(f"'confirm_above' must be a whole number of minor units (cents), not {threshold!r}")
        if payment is None:
            add("'confirm_above' needs 'payment' to say which shown field is the amount")
