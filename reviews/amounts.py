"""Amounts as reviewers read them. Which shown values are money is procedures.money_schema's
(`shown_money`: values read from an annotated money input, or recorded beside a currency); how
they read is procedures.money's (`format_money`: Babel, the currency's own exponent and
grouping). This module only applies them to a review: its values now, a change's difference,
and the payment amount and payee its policy names (`payment`).
"""

from fractions import Fraction

from procedures.money import Money, MoneyError, format_money, is_int
from procedures.money_schema import shown_money
from reviews.state import ReviewState


def money_of(state: ReviewState, values: dict | None = None) -> dict[str, Money]:
    """{shown field: Money} among `values` (default: the review's values now)."""
    run = state.run
    return shown_money(
        run.version.definition,
        state.request.node_id,
        state.values if values is None else values,
        run.inputs,
    )


def _amount_text(amount, money: Money | None):
    if money is None or not is_int(amount):
        return amount
    try:
        return format_money(amount, money.currency)
    except MoneyError:
        return amount


def show_value(state: ReviewState, name: str, value, money: dict | None = None):
    """`value` of shown field `name` as a person reads it: money as money, the rest as is."""
    money = money_of(state) if money is None else money
    return _amount_text(value, money.get(name))


def difference(state: ReviewState, name: str, before, after, money: dict | None = None) -> str:
    """after − before, signed, and as a share of before: "−USD 4,000.00 (−16.7 %)"."""
    if not (is_int(before) and is_int(after)) and not (
        isinstance(before, int | float) and isinstance(after, int | float)
    ):
        return ""
    change = after - before
    sign = "+" if change > 0 else "−" if change < 0 else "±"
    money = money_of(state) if money is None else money
    magnitude = _amount_text(abs(change), money.get(name))
    if not before:
        return f"{sign}{magnitude}"
    percent = abs(Fraction(str(change)) * 100 / Fraction(str(before)))
    return f"{sign}{magnitude} ({sign}{float(percent):.1f} %)"


def payment_amount(state: ReviewState, changes: list[dict] = ()) -> int | None:
    """The amount the approval pays (after `changes`), when the policy names it."""
    field = state.policy.payment.get("amount")
    values = {**state.values, **{c["field"]: c["after"] for c in changes}}
    amount = values.get(field) if field else None
    return amount if is_int(amount) else None


def payment_text(state: ReviewState, changes: list[dict] = ()) -> tuple[str, str]:
    """(the amount as read, the payee) for a confirmation's sentence; "" where unknown. With
    no `payment` in the policy, a review showing exactly one amount of money names that."""
    field = state.policy.payment.get("amount")
    values = {**state.values, **{c["field"]: c["after"] for c in changes}}
    amount = payment_amount(state, changes)
    money = money_of(state, values)
    if field is None and len(money) == 1:
        [only] = money.values()
        return format_money(only.minor_units, only.currency), ""
    amount_text = "" if amount is None else str(_amount_text(amount, money.get(field)))
    payee_field = state.policy.payment.get("payee")
    payee = values.get(payee_field) if payee_field else None
    return amount_text, "" if payee is None else str(payee)
