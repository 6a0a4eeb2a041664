"""Money as money: formatting, parsing, the schema annotation and amounts in recorded JSON.

procedures/money.py and procedures/money_schema.py are pure; docs/money.md explains the rules.
"""

import pytest
import yaml
from django.core import checks
from django.template import Context, Template

from procedures.definition import validate_definition
from procedures.demo import DEMO_DIR
from procedures.money import (
    Money,
    MoneyError,
    amount_for_input,
    check_money_locale,
    format_money,
    minor_unit_exponent,
    parse_money,
)
from procedures.money_schema import money_fields, recorded_money, shown_money
from tests.conftest import SIMPLE_DEFINITION

NBSP = "\u00a0"  # CLDR's currency spacing: a code never wraps away from its digits


def usd(text: str) -> str:
    return text.replace(" ", NBSP)


# --- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (2400000, "USD", "USD 24,000.00"),
        (2400000, "usd", "USD 24,000.00"),
        (24000, "JPY", "JPY 24,000"),
        (24000000, "BHD", "BHD 24,000.000"),
        (5, "USD", "USD 0.05"),
        (0, "EUR", "EUR 0.00"),
        (-150, "USD", "-USD 1.50"),
        (99999999, "GBP", "GBP 999,999.99"),
    ],
)
def test_amounts_are_written_with_the_iso_code_and_the_currencys_own_decimals(
    minor, currency, shown
):
    assert format_money(minor, currency) == usd(shown)


def test_huge_amounts_keep_every_digit():
    assert format_money(10**30 + 1, "USD") == usd("USD 10,000,000,000,000,000,000,000,000,000.01")


def test_the_locale_decides_grouping_and_where_the_code_goes():
    assert format_money(2400000, "EUR", "de_DE") == f"24.000,00{NBSP}EUR"
    assert format_money(2400000, "EUR", "fr_FR") == f"24\u202f000,00{NBSP}EUR"


def test_the_money_locale_setting_is_the_default(settings):
    settings.MONEY_LOCALE = "de_DE"
    assert format_money(123456, "EUR") == f"1.234,56{NBSP}EUR"


def test_minor_units_follow_iso_4217_where_cldr_writes_fewer_decimals():
    # CLDR writes HUF without decimals; an amount in minor units still counts fillér.
    assert minor_unit_exponent("HUF") == 2
    assert minor_unit_exponent("IQD") == 3
    assert format_money(100000, "HUF") == usd("HUF 1,000.00")


def test_nothing_is_rounded_away():
    assert format_money(1, "BHD") == usd("BHD 0.001")


@pytest.mark.parametrize("currency", ["XYZ", "US", "", None, "dollars"])
def test_an_unknown_currency_is_refused_not_guessed(currency):
    with pytest.raises(MoneyError):
        format_money(100, currency)


@pytest.mark.parametrize("value", [1.5, "100", True, None])
def test_only_whole_minor_units_are_amounts(value):
    with pytest.raises(MoneyError):
        format_money(value, "USD")


def test_an_amount_is_prefilled_in_major_units_without_grouping():
    assert amount_for_input(2400000, "USD") == "24000.00"
    assert amount_for_input(24000, "JPY") == "24000"
    assert amount_for_input(2400000, "EUR", "de_DE") == "24000,00"


# --- typing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("24000.00", "USD", 2400000),
        ("24,000.00", "USD", 2400000),
        ("24000", "USD", 2400000),
        (" 24000.5 ", "USD", 2400050),
        ("0.01", "usd", 1),
        ("$24,000", "USD", 2400000),
        ("24000 USD", "USD", 2400000),
        ("24000", "JPY", 24000),
        ("24,000", "JPY", 24000),
        ("1,234.567", "BHD", 1234567),
        ("-5", "USD", -500),
        ("\u22125.10", "USD", -510),
        ("12345678901234567890123456789012.99", "USD", 1234567890123456789012345678901299),
    ],
)
def test_typed_amounts_become_minor_units(typed, currency, minor):
    assert parse_money(typed, currency) == minor


def test_another_locale_reads_its_own_way_of_writing():
    assert parse_money("24.000,00", "EUR", locale="de_DE") == 2400000
    assert parse_money("24000,00", "EUR", locale="de_DE") == 2400000
    assert parse_money("24 000,00", "EUR", locale="fr_FR") == 2400000


def test_a_dot_in_german_is_grouping_so_an_english_decimal_is_refused_not_misread():
    with pytest.raises(MoneyError, match="not grouped"):
        parse_money("24000.00", "EUR", locale="de_DE")


def test_more_decimals_than_the_currency_has_are_refused():
    with pytest.raises(MoneyError) as refused:
        parse_money("24,000.001", "USD")
    assert refused.value.message == "USD amounts have at most 2 decimal places; “24,000.001” has 3."


def test_a_currency_without_minor_unit_takes_whole_amounts_only():
    with pytest.raises(MoneyError, match="JPY amounts have no decimal places"):
        parse_money("24000.5", "JPY")


def test_three_decimal_currencies_take_three():
    with pytest.raises(MoneyError, match="at most 3 decimal places"):
        parse_money("1.2345", "BHD")


def test_negative_amounts_are_refused_where_forbidden():
    with pytest.raises(MoneyError, match="cannot be negative"):
        parse_money("-5", "USD", allow_negative=False)


@pytest.mark.parametrize(
    "typed", ["abc", "1e5", "NaN", "Infinity", "1_000", "\u0661\u0662", "", "-"]
)
def test_garbage_is_refused_with_an_example_of_what_to_type(typed):
    with pytest.raises(MoneyError) as refused:
        parse_money(typed, "USD")
    assert (
        refused.value.message == "Enter the amount in USD as digits, such as 24000.00 or 24,000.00."
    )


def test_misplaced_grouping_is_refused_not_guessed_at():
    with pytest.raises(MoneyError, match="not grouped the way amounts are written here"):
        parse_money("24,00.00", "USD")


def test_another_currencys_symbol_is_not_taken_for_this_one():
    with pytest.raises(MoneyError):
        parse_money("€24,000", "USD")


def test_parsing_an_unknown_currency_is_refused():
    with pytest.raises(MoneyError, match="not an ISO 4217 currency code"):
        parse_money("10", "ABC")


def test_an_unknown_money_locale_fails_the_system_check(settings):
    settings.MONEY_LOCALE = "xx_NOPE"
    assert check_money_locale in checks.registry.registry.get_checks()
    [error] = check_money_locale()
    assert error.id == "rapidfolio.E010" and "'xx_NOPE' is not a locale Babel knows" in error.msg


# --- the annotation, checked with the definition ---------------------------------------------


def definition_with(properties: dict, required=("amount",)) -> dict:
    return {
        **SIMPLE_DEFINITION,
        "input_schema": {"type": "object", "properties": properties, "required": list(required)},
    }


MONEY = {"x-rapidfolio-money": {"currency_field": "currency"}}
AMOUNT = {"type": "integer", "minimum": 1, **MONEY}


def problems(definition) -> list[str]:
    return [str(problem) for problem in validate_definition(definition)]


def test_an_annotated_amount_with_an_iso_currency_enum_is_valid():
    currency = {"type": "string", "enum": ["usd", "EUR"]}
    valid = definition_with({"amount": AMOUNT, "currency": currency}, ("amount", "currency"))
    assert problems(valid) == []
    assert money_fields(valid["input_schema"]) == {"amount": "currency"}


def test_a_currency_pattern_of_three_letters_is_valid():
    currency = {"type": "string", "pattern": "^[A-Z]{3}$", "default": "USD"}
    assert problems(definition_with({"amount": AMOUNT, "currency": currency})) == []


def test_the_currency_field_must_exist():
    found = problems(definition_with({"amount": AMOUNT}))
    assert found == [
        "input 'amount' names 'currency' as its currency, but there is no input 'currency'; "
        "inputs are: 'amount'"
    ]


def test_the_currency_field_must_be_limited_to_iso_codes():
    found = problems(definition_with({"amount": AMOUNT, "currency": {"type": "string"}}, ()))
    assert len(found) == 1 and "must be a string limited to ISO 4217 codes" in found[0]


def test_a_currency_enum_of_unknown_codes_is_refused():
    currency = {"type": "string", "enum": ["usd", "bitcoin"]}
    found = problems(definition_with({"amount": AMOUNT, "currency": currency}, ()))
    assert found == [
        "the currency input 'currency' of 'amount' offers 'bitcoin', not ISO 4217 codes"
    ]


def test_money_is_an_integer_of_minor_units():
    amount = {"type": "number", **MONEY}
    currency = {"type": "string", "enum": ["USD"], "default": "USD"}
    found = problems(definition_with({"amount": amount, "currency": currency}))
    assert found == [
        "input 'amount' is money, so it must be an integer of minor units "
        '(\'"type": "integer"\'; 2400000 is USD 24,000.00)'
    ]


def test_a_required_amount_needs_a_currency_that_is_always_there():
    currency = {"type": "string", "enum": ["USD", "EUR"]}
    found = problems(definition_with({"amount": AMOUNT, "currency": currency}))
    assert found == [
        "input 'amount' is required but its currency 'currency' is neither required nor given a "
        "default, so the amount could not be read"
    ]


def test_a_malformed_annotation_is_refused():
    amount = {"type": "integer", "x-rapidfolio-money": {"currency": "USD"}}
    found = problems(definition_with({"amount": amount}, ()))
    assert found == [
        "input 'amount': x-rapidfolio-money must be "
        '{"currency_field": "<the input that holds its ISO 4217 code>"}'
    ]


def test_an_annotation_below_the_top_level_is_refused_as_having_no_effect():
    nested = {"type": "object", "properties": {"amount": AMOUNT}}
    found = problems(definition_with({"payment": nested}, ()))
    assert found == [
        "input_schema: 'x-rapidfolio-money' at properties/payment/properties/amount/"
        "x-rapidfolio-money has no effect; money is marked on top-level inputs only"
    ]


@pytest.mark.parametrize("name", ["pay_invoice", "wire_transfer", "credit_check"])
def test_the_demo_procedures_mark_their_amounts(name):
    definition = yaml.safe_load((DEMO_DIR / f"{name}.yaml").read_text())["definition"]
    assert problems(definition) == []
    assert money_fields(definition["input_schema"]) == {
        "requested_amount" if name == "credit_check" else "amount": "currency"
    }


# --- which values are money ----------------------------------------------------------------


def test_amounts_in_recorded_json_are_found_beside_their_currency():
    response = {
        "id": "pi_1",
        "amount": 2400000,
        "amount_received": 2400000,
        "currency": "usd",
        "final_balance": {"amount": 1250, "currency": "EUR"},
        "lines": [{"unit_amount": 5, "currency": "jpy"}],
        "fee": {"amount": 30},
    }
    assert recorded_money(response) == [
        ("amount", Money(2400000, "USD")),
        ("final_balance.amount", Money(1250, "EUR")),
        ("lines[0].unit_amount", Money(5, "JPY")),
    ]


def test_recorded_json_without_a_known_currency_has_no_amounts():
    assert recorded_money({"amount": 5, "currency": "points"}) == []
    assert recorded_money("2400000") == []
    assert recorded_money(None) == []


def test_a_shown_value_read_from_a_money_input_is_money_in_the_runs_currency():
    definition = {
        "input_schema": {"properties": {"total": AMOUNT, "currency": {}}},
        "nodes": {"check": {"show": {"to_pay": "inputs.total", "invoice": "inputs['ref']"}}},
    }
    found = shown_money(
        definition, "check", {"to_pay": 2400000, "invoice": "INV-1"}, {"currency": "gbp"}
    )
    assert found == {"to_pay": Money(2400000, "GBP")}


def test_a_shown_amount_beside_a_shown_currency_is_money():
    found = shown_money({}, "review", {"amount": 700000, "currency": "usd"}, {})
    assert found == {"amount": Money(700000, "USD")}


# --- templates ------------------------------------------------------------------------------


def render(text: str, **context) -> str:
    return Template("{% load money_tags %}" + text).render(Context(context))


def test_the_money_filter_formats_minor_units_in_a_currency():
    assert render("{{ amount|money:currency }}", amount=2400000, currency="usd") == usd(
        "USD 24,000.00"
    )


def test_the_money_filter_shows_a_value_it_cannot_read_as_it_is():
    assert render("{{ amount|money:currency }}", amount=2400000, currency="XYZ") == "2400000"
    assert render("{{ amount|money:'USD' }}", amount="n/a") == "n/a"


def test_money_or_plain_formats_money_and_leaves_other_values_alone():
    amounts = {"amount": Money(700000, "USD")}
    text = (
        "{% money_or_plain 500000 'amount' amounts %}|"
        "{% money_or_plain 'INV-1' 'invoice' amounts %}"
    )
    assert render(text, amounts=amounts) == usd("USD 5,000.00") + "|INV-1"
