"""The Run form, built from a procedure version's input JSON Schema.

`run_form` is the one place that turns a schema into a form: one field per property (typed from
the property's schema, with its title, description, bounds and default) plus the environment
chooser. Inputs marked as money are typed in major units ("24000.00") and become minor units
(procedures/money_forms.py). The service still validates the inputs against the schema;
`add_input_errors` puts its per-field messages back beside the fields. A live run is refused
here when its connections are missing, and starts only from a confirmation of its values.
"""

import contextlib
import datetime
import hashlib
import json
import re

from django import forms
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.forms.utils import pretty_name
from django.utils.html import escape

from procedures.models import Environment
from procedures.money import currency_code, format_money, is_int
from procedures.money_forms import known_currency, money_field
from procedures.money_schema import money_fields
from rapidfolio.forms import FocusFirstError

DEFAULT_ENVIRONMENT = Environment.SANDBOX
# A live run starts only from a confirmation page that names what it will do; the page carries
# a signed digest of exactly those values, good for this long.
LIVE_CONFIRMATION_FIELD = "live_confirmation"
LIVE_CONFIRMATION_MAX_AGE = 15 * 60
_LIVE_CONFIRMATION_SALT = "rapidfolio.run-form.live-confirmation"


class IsoDateField(forms.DateField):
    """A date picker whose value is the ISO string JSON Schema's `format: date` expects."""

    widget = forms.DateInput(attrs={"type": "date"})

    def clean(self, value):
        value = super().clean(value)
        return value.isoformat() if isinstance(value, datetime.date) else value


class SchemaJSONField(forms.JSONField):
    """Objects, arrays and untyped values are typed as JSON text."""

    widget = forms.Textarea(attrs={"rows": 4, "class": "mono"})


def _enum_field(schema: dict, options: dict) -> forms.TypedChoiceField:
    values = schema["enum"]
    by_key = {(v if isinstance(v, str) else json.dumps(v)): v for v in values}
    choices = [(key, key) for key in by_key]
    if not options["required"] or "default" not in schema:
        choices.insert(0, ("", "Choose…" if options["required"] else "—"))
    if "default" in schema:
        default = schema["default"]
        options["initial"] = default if isinstance(default, str) else json.dumps(default)
    return forms.TypedChoiceField(
        choices=choices, coerce=by_key.__getitem__, empty_value=None, **options
    )


def _bounds(schema: dict, step: int | float) -> dict:
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + step if step else None
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - step if step else None
    return {"min_value": low, "max_value": high}


def schema_field(schema: dict, *, required: bool, label: str = "", initial=None) -> forms.Field:
    """A form field for one JSON Schema property."""
    kind = schema.get("type")
    if isinstance(kind, list):
        required = required and "null" not in kind
        kind = next((k for k in kind if k != "null"), None)
    options = {
        "required": required,
        "label": schema.get("title") or pretty_name(label),
        # Django's form templates print help_text as HTML (`|safe`); a schema's description is
        # the procedure author's plain text, so it is escaped here, where it becomes help_text.
        "help_text": escape(schema.get("description", "")),
    }
    if "default" in schema:
        options["initial"] = schema["default"]
    if initial is not None:
        options["initial"] = initial
    if "enum" in schema:
        field = _enum_field(schema, options)
        if initial is not None:
            field.initial = initial if isinstance(initial, str) else json.dumps(initial)
        return field
    if kind == "boolean":
        # A checkbox always has a value (checked or not), so a required boolean is satisfied.
        return forms.BooleanField(**{**options, "required": False})
    if kind == "integer":
        return forms.IntegerField(**_bounds(schema, 1), **options)
    if kind == "number":
        return forms.FloatField(**_bounds(schema, 0), **options)
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date":
            return IsoDateField(**options)
        if fmt == "email":
            return forms.EmailField(max_length=schema.get("maxLength"), **options)
        validators = []
        # A pattern Python cannot compile is still applied by the service's schema check.
        with contextlib.suppress(re.error):
            pattern = re.compile(schema.get("pattern") or "")
            if pattern.pattern:
                validators.append(RegexValidator(pattern, "Enter a value in the expected format."))
        return forms.CharField(
            min_length=schema.get("minLength"),
            max_length=schema.get("maxLength"),
            validators=validators,
            strip=False,
            **options,
        )
    if options.get("initial") is not None:
        options["initial"] = json.dumps(options["initial"])
    return SchemaJSONField(**options)


class RunForm(FocusFirstError, forms.Form):
    """Inputs for one run plus its environment. Built by `run_form`, never directly."""

    input_names: list[str]
    environment_field: str
    money_currency_fields: dict[str, str]  # amount input -> the input holding its currency
    live_refusal: str | None = None  # why live cannot run now (a missing live connection)

    def clean(self):
        cleaned = super().clean()
        for name, currency_field in self.money_currency_fields.items():
            text = cleaned.get(name)
            if not isinstance(text, str):
                continue  # blank and optional, or already refused
            currency = cleaned.get(currency_field)
            if currency_code(currency) is None:
                if currency_field not in self.errors:
                    label = self.fields[currency_field].label
                    self.add_error(name, f"Choose the currency ({label}) to read this amount in.")
                continue
            try:
                cleaned[name] = self.fields[name].minor_units(text, currency)
            except ValidationError as exc:
                self.add_error(name, exc)
        if cleaned.get(self.environment_field) == Environment.LIVE and self.live_refusal:
            self.add_error(self.environment_field, self.live_refusal)
        return cleaned

    def money(self) -> dict[str, str]:
        """The cleaned amounts as people read them: {"amount": "USD 24,000.00"}."""
        values = self.inputs()
        return {
            name: format_money(values[name], values[currency])
            for name, currency in self.money_currency_fields.items()
            if is_int(values.get(name)) and currency_code(values.get(currency))
        }

    def summary(self) -> list[tuple[str, str]]:
        """(label, value) for each input given, amounts formatted: what a confirmation names."""
        money, rows = self.money(), []
        for name, value in self.inputs().items():
            field = self.fields[name]
            label = getattr(field, "money_title", None) or field.label
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            rows.append((label, money.get(name, shown)))
        return rows

    def confirmation_token(self, context: str) -> str:
        """A signed digest of the environment and inputs, carried by the live confirmation."""
        return signing.dumps(self._digest(context), salt=_LIVE_CONFIRMATION_SALT)

    def is_confirmed(self, token: str, context: str) -> bool:
        """Whether `token` confirmed exactly these values, recently, in this `context`."""
        try:
            confirmed = signing.loads(
                token, salt=_LIVE_CONFIRMATION_SALT, max_age=LIVE_CONFIRMATION_MAX_AGE
            )
        except signing.BadSignature:
            return False
        return confirmed == self._digest(context)

    def _digest(self, context: str) -> str:
        seen = {"context": context, "environment": self.environment(), "inputs": self.inputs()}
        text = json.dumps(seen, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def inputs(self) -> dict:
        """The cleaned values as the run's inputs; optional fields left blank are omitted."""
        values = {}
        for name in self.input_names:
            value = self.cleaned_data.get(name)
            if value is None or (value == "" and not self.fields[name].required):
                continue
            values[name] = value
        return values

    def environment(self) -> str:
        return self.cleaned_data[self.environment_field]

    def add_input_errors(self, details) -> None:
        """Put the service's [{field, message}] beside the matching fields."""
        for problem in details or []:
            path = str(problem.get("field", ""))
            name = path.split(".", 1)[0]
            if name == "environment":
                name = self.environment_field
            if name in self.fields:
                message = problem["message"]
                if "." in path:
                    message = f"{path.split('.', 1)[1]}: {message}"
                self.add_error(name, message)
            else:
                self.add_error(None, f"{path}: {problem['message']}")


def run_form(schema: dict, data=None, environments=None, live_refusal=None) -> RunForm:
    """The Run form for an input schema: one typed field per property, then the environment,
    chosen among `environments` (those the user may use; all by default). Amounts marked as
    money are typed in major units; `live_refusal` (why live cannot run) refuses live."""
    form = RunForm(data=data, label_suffix="")
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    money = {name: field for name, field in money_fields(schema).items() if field in properties}
    for name, prop in properties.items():
        prop = prop or {}
        if name in money:
            currency = known_currency(properties[money[name]] or {}, data, money[name])
            form.fields[name] = money_field(
                prop,
                required=name in required,
                label=name,
                currency=currency,
                currency_field=money[name],
            )
        else:
            form.fields[name] = schema_field(prop, required=name in required, label=name)
    form.input_names = list(properties)
    form.money_currency_fields = money
    form.live_refusal = live_refusal
    # A procedure may have its own input called "environment"; the chooser then steps aside.
    form.environment_field = "environment" if "environment" not in properties else "run_environment"
    form.fields[form.environment_field] = forms.ChoiceField(
        choices=[
            (value, label)
            for value, label in Environment.choices
            if environments is None or value in environments
        ],
        initial=DEFAULT_ENVIRONMENT,
        widget=forms.RadioSelect,
        label="Environment",
        help_text="Sandbox uses simulators; live calls the real integrations.",
    )
    return form
