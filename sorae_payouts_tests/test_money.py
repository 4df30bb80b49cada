"""Exact money parsing: the scalar and the column-wise parser agree with Decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sorae_payouts.core.money import MoneyError, exponent, format_minor, parse_minor, parse_minor_series

CURRENCIES = ["usd", "jpy", "kwd", "eur", "krw"]


@st.composite
def amounts(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    places = exponent(currency)
    whole = draw(st.integers(min_value=0, max_value=10**15 - 1))
    decimals = draw(st.integers(min_value=0, max_value=places))
    fraction = draw(st.integers(min_value=0, max_value=10**decimals - 1)) if decimals else None
    text = f"{whole}" if fraction is None else f"{whole}.{fraction:0{decimals}d}"
    return text, currency


@settings(deadline=None)  # a property, not a timing: the machine's load must not fail it
@given(st.lists(amounts(), min_size=1, max_size=50))
def test_series_and_scalar_match_decimal(values):
    texts, currencies = zip(*values, strict=False)
    minor, reason = parse_minor_series(pd.Series(texts), pd.Series(currencies))
    assert reason.isna().all()
    for text, currency, got in zip(texts, currencies, minor.tolist(), strict=False):
        expected = int(Decimal(text).scaleb(exponent(currency)))
        assert got == expected == parse_minor(text, currency)
        assert format_minor(got, currency).split()[0].replace(".", "").lstrip("0") == str(expected).lstrip("0")


@pytest.mark.parametrize(
    "text, currency, message",
    [
        ("12.345", "usd", "more than 2 decimals"),
        ("500.5", "jpy", "more than 0 decimals"),
        ("-3", "usd", "plain decimal"),
        ("1e5", "usd", "plain decimal"),
        ("1,000.00", "usd", "plain decimal"),
        ("9999999999999999", "jpy", "too large"),
        ("10", "xyz", "unknown currency"),
    ],
)
def test_rejects_what_cannot_be_exact(text, currency, message):
    with pytest.raises(MoneyError, match=message):
        parse_minor(text, currency)
    _, reason = parse_minor_series(pd.Series([text]), pd.Series([currency]))
    assert reason.iloc[0] is not pd.NA


def test_zero_decimal_and_three_decimal_currencies():
    assert parse_minor("500", "jpy") == 500
    assert parse_minor("1.5", "kwd") == 1500
    assert format_minor(-500, "jpy") == "-500 jpy" and format_minor(1234, "usd") == "12.34 usd"
