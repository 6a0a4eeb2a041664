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


# --- money (docs/money.md) ------------------------------------------------------------------
MONEY_SCHEMA = {
    "type": "object",
    "required": ["amount", "currency"],
    "properties": {
        "amount": {
            "type": "integer",
            "title": "Amount",
            "minimum": 1,
            "maximum": 99999999,
            "x-rapidfolio-money": {"currency_field": "currency"},
        },
        "currency": {"type": "string", "enum": ["usd", "jpy", "bhd"], "default": "usd"},
    },
}


def money_form(**data):
    return run_form(MONEY_SCHEMA, data={"currency": "usd", "environment": "sandbox", **data})


def test_a_money_input_is_a_decimal_text_field_labelled_with_its_currency():
    field = run_form(MONEY_SCHEMA).fields["amount"]
    assert isinstance(field.widget, forms.TextInput)
    assert field.widget.attrs["inputmode"] == "decimal"
    assert field.label == "Amount (USD)"
    assert field.help_text == "Type 24000.00 for USD\u00a024,000.00; stored in minor units."


def test_the_label_names_the_currency_that_was_chosen():
    assert money_form(currency="jpy", amount="x").fields["amount"].label == "Amount (JPY)"


def test_an_amount_typed_in_major_units_is_stored_in_minor_units():
    form = money_form(amount="24000.00")
    assert form.is_valid(), form.errors
    assert form.inputs() == {"amount": 2400000, "currency": "usd"}


def test_grouped_amounts_are_accepted():
    form = money_form(amount="24,000.00")
    assert form.is_valid(), form.errors
    assert form.inputs()["amount"] == 2400000


def test_the_chosen_currency_decides_the_decimals():
    form = money_form(amount="24000", currency="jpy")
    assert form.is_valid(), form.errors
    assert form.inputs()["amount"] == 24000
    form = money_form(amount="24.123", currency="bhd")
    assert form.is_valid(), form.errors
    assert form.inputs()["amount"] == 24123


def test_too_many_decimals_are_an_error_beside_the_amount():
    form = money_form(amount="24,000.001")
    assert not form.is_valid()
    assert form.errors["amount"] == [
        "USD amounts have at most 2 decimal places; “24,000.001” has 3."
    ]


def test_decimals_for_a_currency_without_them_are_an_error():
    form = money_form(amount="24000.50", currency="jpy")
    assert not form.is_valid()
    assert form.errors["amount"] == [
        "JPY amounts have no decimal places; enter a whole number of JPY."
    ]


def test_garbage_is_an_error_saying_what_to_type():
    form = money_form(amount="twenty")
    assert not form.is_valid()
    assert form.errors["amount"] == [
        "Enter the amount in USD as digits, such as 24000.00 or 24,000.00."
    ]


def test_a_negative_amount_is_refused_when_the_schema_forbids_it():
    form = money_form(amount="-5.00")
    assert not form.is_valid()
    assert form.errors["amount"] == ["The amount cannot be negative."]


def test_bounds_are_checked_in_minor_units_and_named_as_money():
    assert money_form(amount="0.00").errors["amount"] == ["Enter at least USD\u00a00.01."]
    assert money_form(amount="1,000,000.00").errors["amount"] == [
        "Enter at most USD\u00a0999,999.99."
    ]


def test_an_amount_without_a_currency_cannot_be_read():
    form = run_form(
        {
            **MONEY_SCHEMA,
            "required": ["amount"],
            "properties": {
                **MONEY_SCHEMA["properties"],
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
        },
        data={"amount": "10.00", "currency": "", "environment": "sandbox"},
    )
    assert not form.is_valid()
    assert form.errors["amount"] == ["Choose the currency (Currency) to read this amount in."]


def test_a_default_amount_is_prefilled_in_major_units():
    schema = {
        **MONEY_SCHEMA,
        "properties": {**MONEY_SCHEMA["properties"]},
    }
    schema["properties"]["amount"] = {**schema["properties"]["amount"], "default": 2400000}
    assert run_form(schema)["amount"].value() == "24000.00"


def test_live_is_refused_beside_the_environment_when_a_connection_is_missing():
    form = run_form(
        MONEY_SCHEMA,
        data={"amount": "10.00", "currency": "usd", "environment": "live"},
        live_refusal="Live is not available: no stripe connection.",
    )
    assert not form.is_valid()
    assert form.errors["environment"] == ["Live is not available: no stripe connection."]


def test_a_sandbox_run_is_not_refused_for_missing_live_connections():
    form = run_form(
        MONEY_SCHEMA,
        data={"amount": "10.00", "currency": "usd", "environment": "sandbox"},
        live_refusal="no live",
    )
    assert form.is_valid(), form.errors


def test_the_live_confirmation_names_amounts_as_money():
    form = money_form(amount="24000.00", environment="live")
    assert form.is_valid(), form.errors
    assert form.money() == {"amount": "USD\u00a024,000.00"}
    assert form.summary() == [("Amount", "USD\u00a024,000.00"), ("Currency", "usd")]


def test_a_confirmation_token_confirms_exactly_the_values_it_was_made_for():
    form = money_form(amount="24000.00", environment="live")
    assert form.is_valid()
    token = form.confirmation_token("7:1")
    assert form.is_confirmed(token, "7:1")
    assert not form.is_confirmed(token, "8:1")  # another version, or another user
    other = money_form(amount="24000.01", environment="live")
    assert other.is_valid()
    assert not other.is_confirmed(token, "7:1")
    assert not form.is_confirmed(token + "x", "7:1")


def test_a_confirmation_expires(monkeypatch):
    form = money_form(amount="24000.00", environment="live")
    assert form.is_valid()
    token = form.confirmation_token("7:1")
    monkeypatch.setattr("procedures.forms.LIVE_CONFIRMATION_MAX_AGE", -1)
    assert not form.is_confirmed(token, "7:1")
