"""The form field for an amount of money, typed in major units and cleaned to minor units.

The Run form uses it for inputs marked as money (procedures/forms.py); a review's override of an
amount can use it with the currency it is shown in (`MoneyField(currency="USD", ...)`).
"""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.utils import pretty_name
from django.utils.html import escape

from procedures.money import (
    MoneyError,
    amount_for_input,
    currency_code,
    format_money,
    is_int,
    parse_money,
)

_BOUND_MESSAGES = {
    "minimum": (lambda amount, bound: amount < bound, "Enter at least {}."),
    "exclusiveMinimum": (lambda amount, bound: amount <= bound, "Enter more than {}."),
    "maximum": (lambda amount, bound: amount > bound, "Enter at most {}."),
    "exclusiveMaximum": (lambda amount, bound: amount >= bound, "Enter less than {}."),
    "multipleOf": (lambda amount, bound: bound > 0 and amount % bound, "Enter a multiple of {}."),
}


class MoneyField(forms.CharField):
    """An amount typed as people write it ("24000.00"), cleaned to minor units (2400000).

    The currency decides how many decimals are allowed. With `currency` given the field cleans
    to minor units itself; in the Run form the currency is another input, so the form converts
    in `clean` once it knows it, and `display_currency` (the chooser's default) only shows an
    initial value. `bounds` are the JSON Schema's, in minor units; out-of-range messages name
    them as money ("Enter at least USD 0.01.").
    """

    def __init__(
        self,
        *,
        currency: str | None = None,
        display_currency: str | None = None,
        bounds: dict | None = None,
        **kwargs,
    ):
        self.currency = currency
        self.display_currency = display_currency or currency
        self.bounds = {key: value for key, value in (bounds or {}).items() if is_int(value)}
        minimum, above = self.bounds.get("minimum"), self.bounds.get("exclusiveMinimum")
        self.allow_negative = not (
            (minimum is not None and minimum >= 0) or (above is not None and above >= -1)
        )
        attrs = {"inputmode": "decimal", "autocomplete": "off", "class": "money-input"}
        kwargs.setdefault("widget", forms.TextInput(attrs=attrs))
        super().__init__(max_length=64, **kwargs)

    def prepare_value(self, value):
        if is_int(value) and currency_code(self.display_currency):
            return amount_for_input(value, self.display_currency)
        return value

    def clean(self, value):
        text = super().clean(value)
        if text in self.empty_values:
            return None
        return self.minor_units(text, self.currency) if self.currency else text

    def minor_units(self, text: str, currency: str) -> int:
        try:
            amount = parse_money(text, currency, allow_negative=self.allow_negative)
        except MoneyError as exc:
            raise ValidationError(exc.message, code="invalid_amount") from exc
        for keyword, bound in self.bounds.items():
            outside, message = _BOUND_MESSAGES.get(keyword, (None, ""))
            if outside and outside(amount, bound):
                raise ValidationError(message.format(format_money(bound, currency)), code=keyword)
        return amount


def money_field(
    schema: dict, *, required: bool, label: str, currency: str | None, currency_field: str
) -> MoneyField:
    """The Run form's field for an annotated amount: its label names the currency when it is
    known ("Amount (USD)"), and the page's script keeps it in step with the currency chooser."""
    title = schema.get("title") or pretty_name(label)
    code = currency_code(currency)
    example = f"{amount_for_input(2400000, code)} for {format_money(2400000, code)}" if code else ""
    hint = f"Type {example or 'the amount in major units, e.g. 24000.00'}; stored in minor units."
    field = MoneyField(
        required=required,
        label=f"{title} ({code})" if code else title,
        help_text=" ".join(filter(None, [escape(schema.get("description", "")), hint])),
        bounds={key: schema[key] for key in _BOUND_MESSAGES if key in schema},
        initial=schema.get("default"),
        display_currency=code,
    )
    field.widget.attrs.update({"data-money-label": title, "data-money-currency": currency_field})
    field.money_title = title
    return field


def known_currency(schema: dict, data, name: str) -> str | None:
    """The currency a money field is read in before the form is cleaned, if one is known."""
    if data is not None and currency_code(data.get(name)):
        return data.get(name)
    values = schema.get("enum") or ([schema["const"]] if "const" in schema else [])
    return schema.get("default") or (values[0] if len(values) == 1 else None)
