"""The Run form, built from a procedure version's input JSON Schema.

`run_form` is the one place that turns a schema into a form: one field per property (typed from
the property's schema, with its title, description, bounds and default) plus the environment
chooser. The service still validates the inputs against the schema; `add_input_errors` puts its
per-field messages back beside the fields.
"""

import contextlib
import datetime
import json
import re

from django import forms
from django.core.validators import RegexValidator
from django.forms.utils import pretty_name

from procedures.models import Environment

DEFAULT_ENVIRONMENT = Environment.SANDBOX


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
        "help_text": schema.get("description", ""),
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


class RunForm(forms.Form):
    """Inputs for one run plus its environment. Built by `run_form`, never directly."""

    input_names: list[str]
    environment_field: str

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


def run_form(schema: dict, data=None) -> RunForm:
    """The Run form for an input schema: one typed field per property, then the environment."""
    form = RunForm(data=data, label_suffix="")
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    for name, prop in properties.items():
        form.fields[name] = schema_field(prop or {}, required=name in required, label=name)
    form.input_names = list(properties)
    # A procedure may have its own input called "environment"; the chooser then steps aside.
    form.environment_field = "environment" if "environment" not in properties else "run_environment"
    form.fields[form.environment_field] = forms.ChoiceField(
        choices=Environment.choices,
        initial=DEFAULT_ENVIRONMENT,
        widget=forms.RadioSelect,
        label="Environment",
        help_text="Sandbox uses simulators; live calls the real integrations.",
    )
    return form
