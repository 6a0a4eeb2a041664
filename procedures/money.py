"""Money: which values are amounts, how people read them and how they type them.

Amounts are integers in the currency's minor unit, as Stripe and banks exchange them: 2400000 is
USD 24,000.00, 24000 is JPY 24,000, 24000000 is BHD 24,000.000. Records, the API and the JSON
views keep those integers exactly as received; only what a person reads or types goes through
here.

- An input JSON Schema marks an amount with `"x-rapidfolio-money": {"currency_field": "<name>"}`
  on an integer property; the named property holds the ISO 4217 code. Which values are money
  (the annotation, amounts in recorded JSON) is procedures/money_schema.py; docs/money.md.
- `format_money` writes an amount with its ISO code, the locale's grouping and the currency's
  own decimals (Babel, CLDR data): "USD 24,000.00", "JPY 24,000", "24.000,00 EUR" in de_DE.
- `parse_money` reads what a person typed ("24000.00", "24,000.00") into minor units, refusing
  anything it would have to guess at.
"""

import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import (
    NumberFormatError,
    NumberPattern,
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
    is_currency,
    parse_decimal,
    parse_pattern,
)
from django.conf import settings
from django.core import checks

ANNOTATION = "x-rapidfolio-money"
DEFAULT_LOCALE = "en_US"

# CLDR, Babel's data, records how many decimals people write for a currency. For these it says
# fewer than ISO 4217's minor unit, which is what an amount in minor units counts (100000 fillér
# is HUF 1,000.00). Reading them with CLDR's digits would show HUF 100000 as HUF 100,000: the
# 100x misreading this module exists to prevent. The list is every active code where the two
# differ (ISO 4217 amendment 177 against CLDR 47's currencyData).
ISO_MINOR_UNITS_BEYOND_CLDR = {
    "AFN": 2,
    "ALL": 2,
    "COP": 2,
    "HUF": 2,
    "IDR": 2,
    "IQD": 3,
    "IRR": 2,
    "KPW": 2,
    "LAK": 2,
    "LBP": 2,
    "MGA": 2,
    "MMK": 2,
    "SLL": 2,
    "SOS": 2,
    "SYP": 2,
    "YER": 2,
}
# Patterns a currency field may use instead of an enum: each admits three letters only.
CURRENCY_PATTERNS = ("^[A-Z]{3}$", "^[a-z]{3}$", "^[A-Za-z]{3}$")
MINUS_SIGNS = ("-", "\u2212")
# Spaces people type where a locale groups with a (narrow) no-break space (fr_FR: 24 000,00).
SPACES = (" ", "\u00a0", "\u202f")


class MoneyError(ValueError):
    """An amount or currency that cannot be read; `message` says what to do instead."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Money:
    minor_units: int
    currency: str  # the upper-case ISO 4217 code

    def __str__(self) -> str:
        return format_money(self.minor_units, self.currency)


# --- currencies -----------------------------------------------------------------------------


def currency_code(value) -> str | None:
    """The upper-case ISO 4217 code of `value` ("usd" -> "USD"), or None when it is none."""
    return _known_code(value) if isinstance(value, str) else None


@lru_cache(maxsize=512)
def _known_code(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        return None
    code = value.upper()
    return code if is_currency(code) else None


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places one major unit has: USD 2, JPY 0, BHD 3."""
    return _exponent(_code(currency))


@lru_cache(maxsize=512)
def _exponent(code: str) -> int:
    return ISO_MINOR_UNITS_BEYOND_CLDR.get(code, get_currency_precision(code))


def to_decimal(minor_units: int, currency: str) -> Decimal:
    """The amount in major units, exactly: 2400000 USD -> Decimal("24000.00")."""
    if not is_int(minor_units):
        raise MoneyError(f"an amount in minor units is a whole number, not {minor_units!r}")
    exponent = minor_unit_exponent(currency)
    return Decimal(f"{minor_units}E-{exponent}") if exponent else Decimal(minor_units)


def _code(currency) -> str:
    code = currency_code(currency)
    if code is None:
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency code")
    return code


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- reading an amount ----------------------------------------------------------------------


def format_money(minor_units: int, currency: str, locale: str | None = None) -> str:
    """The amount as a person reads it: "USD 24,000.00", "-JPY 1,500", "24.000,00 EUR".

    The ISO code rather than a symbol: "$" is also the Canadian, Australian and Mexican
    dollar's, and a finance reader must never have to guess. Every minor unit is shown; nothing
    is rounded away.
    """
    code = _code(currency)
    amount = to_decimal(minor_units, code)
    digits = minor_unit_exponent(code)
    place = _locale(locale)
    pattern = _money_pattern(str(place), digits)
    with localcontext() as context:
        context.prec = max(28, len(str(abs(minor_units))) + 2)
        text = pattern.apply(amount, place, currency=code, currency_digits=False)
    # CLDR's currency spacing, which Babel does not apply: a code never touches a digit.
    text = re.sub(rf"{code}(?=[\d+\-\u2212])", f"{code}\u00a0", text)
    return re.sub(rf"(?<=\d){code}", f"\u00a0{code}", text)


def amount_for_input(minor_units: int, currency: str, locale: str | None = None) -> str:
    """The amount as typed into a form: major units, the locale's decimal sign, no grouping."""
    text = str(to_decimal(minor_units, currency))
    return text.replace(".", get_decimal_symbol(_locale(locale)))


@lru_cache(maxsize=64)
def _money_pattern(locale: str, digits: int) -> NumberPattern:
    """The locale's own currency pattern with the ISO code (¤¤) in place of the symbol (¤) and
    exactly `digits` decimals. Built once per pair; never changed after."""
    pattern = Locale.parse(locale).currency_formats["standard"].pattern.replace("¤", "¤¤")
    number_pattern = parse_pattern(pattern)
    number_pattern.frac_prec = (digits, digits)
    return number_pattern


def _locale(locale: str | None) -> Locale:
    name = locale or getattr(settings, "MONEY_LOCALE", DEFAULT_LOCALE)
    try:
        return _parsed_locale(str(name))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise MoneyError(f"MONEY_LOCALE {name!r} is not a locale Babel knows") from exc


@lru_cache(maxsize=32)
def _parsed_locale(name: str) -> Locale:
    return Locale.parse(name)


@checks.register()
def check_money_locale(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A MONEY_LOCALE Babel does not know would leave every amount unreadable: refuse to start."""
    try:
        _locale(None)
    except MoneyError as exc:
        hint = "Set MONEY_LOCALE to a Babel locale such as en_US, en_GB or de_DE."
        return [checks.Error(exc.message, hint=hint, id="rapidfolio.E010")]
    return []


# --- typing an amount -----------------------------------------------------------------------


def parse_money(
    text: str, currency: str, *, locale: str | None = None, allow_negative: bool = True
) -> int:
    """What a person typed, in minor units: "24000.00" or "24,000.00" USD -> 2400000.

    Accepted: digits, the locale's grouping (checked, so "24,00.00" is refused rather than
    guessed at), its decimal sign, a leading minus, and the currency's own code or symbol.
    Refused with a MoneyError saying why: anything else, more decimals than the currency has
    ("24,000.001" USD), and a negative amount unless `allow_negative`.
    """
    code = _code(currency)
    place = _locale(locale)
    digits = minor_unit_exponent(code)
    typed = str(text).strip()
    number = _without_currency(typed, code, place)
    decimal_sign, group = get_decimal_symbol(place), get_group_symbol(place)
    if group in SPACES:
        number = "".join(group if char in SPACES else char for char in number)
    for sign in MINUS_SIGNS:
        number = number.replace(sign, "-", 1) if number.startswith(sign) else number
    if not _looks_like_amount(number, decimal_sign, group):
        raise MoneyError(f"Enter the amount in {code} as digits, such as {_examples(code, place)}.")
    try:
        value = parse_decimal(number, locale=place, strict=True)
    except NumberFormatError as exc:
        raise MoneyError(
            f"“{typed}” is not grouped the way amounts are written here; write it as "
            f"{_examples(code, place)}."
        ) from exc
    if value < 0 and not allow_negative:
        raise MoneyError("The amount cannot be negative.")
    with localcontext() as context:
        context.prec = max(28, len(number) + digits + 2)
        minor = value.scaleb(digits)
        if minor != minor.to_integral_value():
            raise MoneyError(_too_precise(code, digits, typed, decimal_sign))
    return int(minor)


def _without_currency(typed: str, code: str, place: Locale) -> str:
    """`typed` without its currency's code or symbol, if it carries one ("$24,000", "24000 USD")."""
    for mark in sorted({code, code.lower(), get_currency_symbol(code, place)}, key=len)[::-1]:
        if typed.startswith(mark):
            return typed[len(mark) :].strip()
        if typed.endswith(mark):
            return typed[: -len(mark)].strip()
    return typed


def _looks_like_amount(number: str, decimal_sign: str, group: str) -> bool:
    # ASCII digits only: Babel would also read "1e5", "NaN", "1_000" and other scripts' digits.
    shape = rf"[+-]?(?:[0-9][0-9{re.escape(group)}]*)?(?:{re.escape(decimal_sign)}[0-9]+)?"
    return bool(re.fullmatch(shape, number)) and any(char.isdigit() for char in number)


def _examples(code: str, place: Locale) -> str:
    minor = 24000 * 10 ** minor_unit_exponent(code)
    plain, grouped = (
        amount_for_input(minor, code, str(place)),
        format_money(minor, code, str(place)),
    )
    grouped = grouped.replace(code, "").strip("\u00a0 ")
    return plain if plain == grouped else f"{plain} or {grouped}"


def _too_precise(code: str, digits: int, typed: str, decimal_sign: str) -> str:
    if digits == 0:
        return f"{code} amounts have no decimal places; enter a whole number of {code}."
    written = len(typed.rsplit(decimal_sign, 1)[-1]) if decimal_sign in typed else 0
    places = f"{digits} decimal place{'s' if digits != 1 else ''}"
    return f"{code} amounts have at most {places}; “{typed}” has {written}."
