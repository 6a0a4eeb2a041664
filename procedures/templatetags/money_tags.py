"""Money in templates: `{% load money_tags %}`.

- `{{ amount|money:currency }}`: "USD 24,000.00" for an integer of minor units and a currency
  code ("usd" or "USD"), or for a Money; anything else is shown as it is.
- `{% inputs_money schema inputs as money %}`: {input: Money} for a run's annotated amounts.
- `{% shown_money definition node_id shown_values inputs as money %}`: {shown name: Money} for a
  review's values (procedures.money_schema.shown_money says which they are).
- `{% recorded_money value as amounts %}`: [(path, Money)] found in recorded JSON by shape.
- `{% money_or_plain value name money %}`: `value` formatted in `money[name]`'s currency when
  `name` is money, else in one line (strings as they are, anything else as compact JSON).

A value whose currency is unknown is never guessed at: it is shown raw, as recorded.
"""

import json

from django import template

from procedures import money_schema
from procedures.money import Money, MoneyError, currency_code, format_money, is_int

register = template.Library()


@register.filter
def money(value, currency=None) -> str:
    try:
        if isinstance(value, Money):
            return format_money(value.minor_units, value.currency)
        if is_int(value) and currency_code(currency):
            return format_money(value, currency)
    except MoneyError:
        pass
    return _plain(value)


@register.simple_tag
def inputs_money(schema, inputs) -> dict[str, Money]:
    return money_schema.money_in(inputs, schema)


@register.simple_tag
def shown_money(definition, node_id, shown_values, inputs) -> dict[str, Money]:
    return money_schema.shown_money(definition, node_id, shown_values, inputs)


@register.simple_tag
def recorded_money(value) -> list[tuple[str, Money]]:
    return money_schema.recorded_money(value)


@register.simple_tag
def money_or_plain(value, name, amounts) -> str:
    """`value` in the currency `amounts[name]` is in (an override's before and after both read
    in the shown amount's currency), or in one line when `name` is not money."""
    found = amounts.get(name) if isinstance(amounts, dict) else None
    return money(value, found.currency) if isinstance(found, Money) else _plain(value)


def _plain(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
