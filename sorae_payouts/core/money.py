"""Money as integer minor units with an explicit lowercase currency.

Floats never touch money: decimal strings from input files are parsed exactly, either one at a time
(`parse_minor`) or column-wise for large files (`parse_minor_series`), both with the same rules.

The exponent table is Stripe's, not ISO 4217's: Stripe treats some currencies differently from the
ISO standard (for example `ugx` and `isk` are zero-decimal for charges), and what matters here is
what Stripe's `amount` field means. A well-kept library for *Stripe's* exponents does not exist
(babel/pycountry carry ISO data), so the table is written by hand from Stripe's currency docs.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING

from sorae_payouts.core.errors import InvalidValue

if TYPE_CHECKING:  # pandas costs ~0.5 s to import: only the column-wise parser needs it
    import pandas as pd

# Stripe's zero-decimal currencies: the amount IS the major unit (500 jpy is amount=500).
ZERO_DECIMAL = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
# Stripe's three-decimal currencies.
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
# Two-decimal currencies Sorae pays out in (Stripe Connect payout currencies).
TWO_DECIMAL = frozenset(
    [
        "usd",
        "eur",
        "gbp",
        "cad",
        "aud",
        "nzd",
        "chf",
        "sek",
        "nok",
        "dkk",
        "pln",
        "czk",
        "huf",
        "ron",
        "bgn",
        "sgd",
        "hkd",
        "mxn",
        "brl",
        "inr",
        "myr",
        "thb",
        "php",
        "idr",
        "aed",
        "sar",
        "ils",
        "try",
        "zar",
    ]
)
SUPPORTED_CURRENCIES = ZERO_DECIMAL | THREE_DECIMAL | TWO_DECIMAL

# [0-9], never \d: \d also matches other scripts' digits ("١٢", "１２"), which int() would accept.
_AMOUNT_PATTERN = r"^([0-9]+)(?:\.([0-9]+))?$"
NON_ASCII_DIGITS = "digits must be ASCII 0-9"
# BIGINT holds 9.2e18: 15 whole digits plus up to 3 decimals stays far inside it. Larger is a bug.
MAX_WHOLE_DIGITS = 15
_AMOUNT_RE = re.compile(_AMOUNT_PATTERN)


class MoneyError(InvalidValue):
    """An amount or currency that cannot be represented exactly."""


def exponent(currency: str) -> int:
    """Number of decimals of `currency`'s minor unit, as Stripe counts them."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    if currency in TWO_DECIMAL:
        return 2
    raise MoneyError(f"unknown currency {currency!r} (expected a lowercase ISO 4217 code Sorae pays in)")


def parse_minor(text: str, currency: str) -> int:
    """Parse a non-negative decimal string in major units ("12.34") into integer minor units.

    Rejects signs, exponents, thousands separators and more decimals than the currency allows,
    rather than rounding: a commission of "12.345" usd is an upstream bug, not 1234 or 1235 cents.
    """
    places = exponent(currency)
    if has_non_ascii_digit(text):
        raise MoneyError(f"amount {text!r}: {NON_ASCII_DIGITS}")
    match = _AMOUNT_RE.match(text.strip())
    if not match:
        raise MoneyError(f"amount {text!r} is not a plain decimal number like 12.34")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(whole.lstrip("0")) > MAX_WHOLE_DIGITS:
        raise MoneyError(f"amount {text!r} is too large (more than {MAX_WHOLE_DIGITS} whole digits)")
    if len(fraction) > places:
        raise MoneyError(f"amount {text!r} has more than {places} decimals allowed for {currency}")
    return int(whole) * 10**places + (int(fraction.ljust(places, "0")) if places else 0)


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units as a major-unit string ("12.34 usd", "-500 jpy") without floats."""
    places = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    value = abs(int(amount_minor))
    if not places:
        return f"{sign}{value} {currency}"
    return f"{sign}{value // 10**places}.{value % 10**places:0{places}d} {currency}"


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """Exact Decimal in major units, for display and exports."""
    return Decimal(int(amount_minor)).scaleb(-exponent(currency))


def parse_minor_series(amounts: pd.Series, currencies: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Column-wise `parse_minor`: returns (amount_minor as nullable Int64, error reason or <NA>).

    Pure string and integer arithmetic (no floats), vectorized through pandas' Arrow-backed string
    methods so a million rows parse in well under a second.
    """
    import pandas as pd

    text = amounts.astype("string").str.strip()
    places = currencies.astype("category").map(_exponent_or_none).astype("Int64")
    well_formed = text.str.fullmatch(_AMOUNT_PATTERN[1:-1]).fillna(False)
    fraction = text.str.replace(r"^[0-9]+\.?", "", regex=True)
    reason = pd.Series(pd.NA, index=amounts.index, dtype="string")
    reason = reason.mask(places.isna(), "unknown currency")
    reason = reason.mask(reason.isna() & text.isna(), "missing amount")
    reason = reason.mask(reason.isna() & non_ascii_digits(text.fillna("")), NON_ASCII_DIGITS)
    reason = reason.mask(reason.isna() & ~well_formed, "not a plain decimal number like 12.34")
    whole = text.str.replace(r"\.[0-9]*$", "", regex=True)
    too_big = (whole.str.lstrip("0").str.len() > MAX_WHOLE_DIGITS).fillna(False)
    reason = reason.mask(reason.isna() & too_big, f"too large (more than {MAX_WHOLE_DIGITS} whole digits)")
    too_long = (fraction.str.len().astype("Int64") > places).fillna(False)
    reason = reason.mask(reason.isna() & too_long, "more decimals than the currency allows")
    ok = reason.isna()
    minor = pd.Series(pd.NA, index=amounts.index, dtype="Int64")
    for n in places[ok].unique().tolist():
        rows = ok & (places == n)
        whole_int = pd.to_numeric(whole[rows], errors="raise").astype("int64")
        frac_int = pd.to_numeric(fraction[rows].str.pad(int(n), side="right", fillchar="0")) if n else 0
        minor[rows] = whole_int * 10 ** int(n) + frac_int
    return minor, reason


def _exponent_or_none(currency: object) -> int | None:
    try:
        return exponent(currency) if isinstance(currency, str) else None
    except MoneyError:
        return None


def has_non_ascii_digit(text: str) -> bool:
    """True when `text` holds a digit of another script (Arabic-Indic, full-width, ...)."""
    return not text.isascii() and any(ch.isdigit() and not ("0" <= ch <= "9") for ch in text)


def non_ascii_digits(text: pd.Series) -> pd.Series:
    """Column-wise `has_non_ascii_digit`; only the (rare) non-ASCII values are looked at one by one."""
    import pandas as pd

    found = pd.Series(False, index=text.index)
    candidates = text.str.contains(r"[^\x00-\x7f]", regex=True).fillna(False).astype(bool)
    if candidates.any():
        found[candidates] = text[candidates].map(has_non_ascii_digit).astype(bool)
    return found
