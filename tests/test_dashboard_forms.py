"""procedures.forms.run_form: the Run form built from an input JSON Schema, on its own."""

import datetime

from django import forms

from procedures.forms import run_form

SCHEMA = {
    "type": "object",
    "required": ["name", "count", "currency", "due", "email"],
    "properties": {
        "name": {
            "type": "string",
            "title": "Customer name",
            "description": "As on the invoice.",
            "minLength": 2,
            "maxLength": 10,
        },
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "urgent": {"type": "boolean"},
        "currency": {"type": "string", "enum": ["usd", "eur"], "default": "usd"},
        "due": {"type": "string", "format": "date"},
        "email": {"type": "string", "format": "email"},
        "note": {"type": "string"},
    },
}

VALID = {
    "name": "Acme",
    "count": "3",
    "ratio": "0.5",
    "urgent": "on",
    "currency": "eur",
    "due": "2025-03-01",
    "email": "ap@acme.test",
    "environment": "sandbox",
}


def test_each_property_becomes_a_typed_field():
    fields = run_form(SCHEMA).fields
    assert isinstance(fields["name"], forms.CharField)
    assert isinstance(fields["count"], forms.IntegerField)
    assert isinstance(fields["ratio"], forms.FloatField)
    assert isinstance(fields["urgent"], forms.BooleanField)
    assert isinstance(fields["currency"], forms.TypedChoiceField)
    assert isinstance(fields["due"], forms.DateField)
    assert fields["due"].widget.input_type == "date"
    assert isinstance(fields["email"], forms.EmailField)


def test_fields_follow_the_schema_order_and_end_with_the_environment():
    assert list(run_form(SCHEMA).fields) == [*SCHEMA["properties"], "environment"]


def test_title_is_the_label_and_description_the_help_text():
    field = run_form(SCHEMA).fields["name"]
    assert field.label == "Customer name"
    assert field.help_text == "As on the invoice."


def test_label_falls_back_to_the_property_name():
    assert run_form(SCHEMA).fields["count"].label == "Count"


def test_required_follows_the_schema():
    fields = run_form(SCHEMA).fields
    assert fields["name"].required and fields["count"].required
    assert not fields["ratio"].required and not fields["note"].required


def test_bounds_become_min_and_max():
    fields = run_form(SCHEMA).fields
    assert (fields["count"].min_value, fields["count"].max_value) == (1, 5)
    assert (fields["name"].min_length, fields["name"].max_length) == (2, 10)
    assert (fields["ratio"].min_value, fields["ratio"].max_value) == (0, 1)


def test_enum_offers_its_values_with_the_default_selected():
    field = run_form(SCHEMA).fields["currency"]
    assert [value for value, _ in field.choices] == ["usd", "eur"]
    assert field.initial == "usd"


def test_integer_enum_gives_back_integers():
    form = run_form(
        {"properties": {"level": {"type": "integer", "enum": [1, 2]}}, "required": ["level"]},
        data={"level": "2", "environment": "sandbox"},
    )
    assert form.is_valid(), form.errors
    assert form.inputs() == {"level": 2}


def test_environment_chooser_offers_sandbox_and_live_defaulting_to_sandbox():
    field = run_form(SCHEMA).fields["environment"]
    assert [value for value, _ in field.choices] == ["sandbox", "live"]
    assert field.initial == "sandbox"
    assert isinstance(field.widget, forms.RadioSelect)


def test_valid_data_becomes_typed_inputs_without_blank_optionals():
    form = run_form(SCHEMA, data=VALID)
    assert form.is_valid(), form.errors
    assert form.inputs() == {
        "name": "Acme",
        "count": 3,
        "ratio": 0.5,
        "urgent": True,
        "currency": "eur",
        "due": "2025-03-01",
        "email": "ap@acme.test",
    }
    assert form.environment() == "sandbox"


def test_unchecked_boolean_is_false():
    form = run_form(SCHEMA, data={**VALID, "urgent": ""})
    assert form.is_valid()
    assert form.inputs()["urgent"] is False


def test_missing_required_values_are_field_errors():
    form = run_form(SCHEMA, data={"environment": "sandbox"})
    assert not form.is_valid()
    for name in ("name", "count", "due", "email"):
        assert form.errors[name] == ["This field is required."]


def test_out_of_range_and_malformed_values_are_field_errors():
    form = run_form(
        SCHEMA,
        data={**VALID, "count": "9", "name": "A", "email": "nope", "due": "tomorrow"},
    )
    assert not form.is_valid()
    assert "less than or equal to 5" in form.errors["count"][0]
    assert "at least 2 characters" in form.errors["name"][0]
    assert form.errors["email"] == ["Enter a valid email address."]
    assert form.errors["due"] == ["Enter a valid date."]


def test_unknown_environment_is_refused():
    form = run_form(SCHEMA, data={**VALID, "environment": "production"})
    assert not form.is_valid()
    assert "environment" in form.errors


def test_service_errors_are_put_beside_their_fields():
    form = run_form(SCHEMA, data=VALID)
    assert form.is_valid()
    form.add_input_errors(
        [
            {"field": "name", "message": "'Acme' does not match '^INV'"},
            {"field": "(inputs)", "message": "Additional properties are not allowed"},
        ]
    )
    assert form.errors["name"] == ["'Acme' does not match '^INV'"]
    assert form.non_field_errors() == ["(inputs): Additional properties are not allowed"]


def test_pattern_is_checked_in_the_form():
    form = run_form(
        {"properties": {"ref": {"type": "string", "pattern": "^INV-[0-9]+$"}}, "required": ["ref"]},
        data={"ref": "nope", "environment": "live"},
    )
    assert not form.is_valid()
    assert form.errors["ref"] == ["Enter a value in the expected format."]


def test_an_input_called_environment_keeps_its_name_and_the_chooser_moves():
    form = run_form(
        {"properties": {"environment": {"type": "string"}}},
        data={"environment": "prod-eu", "run_environment": "live"},
    )
    assert form.is_valid(), form.errors
    assert form.inputs() == {"environment": "prod-eu"}
    assert form.environment() == "live"


def test_date_default_is_prefilled():
    form = run_form(
        {"properties": {"on": {"type": "string", "format": "date", "default": "2025-01-31"}}}
    )
    assert form.fields["on"].initial == "2025-01-31"
    assert datetime.date.fromisoformat(form.fields["on"].initial)
