"""Property: any valid decimal string, imported, is stored as exactly its integer minor amount
(Decimal arithmetic as the oracle); one decimal too many is always rejected, never rounded."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sorae_payouts.core.money import exponent
from sorae_payouts.ingest import ImportKind
from sorae_payouts.ingest.checks import RowChecks
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import COMMISSION_HEADER, run_import, seed_affiliates, table_rows, write_csv

CURRENCIES = ["usd", "eur", "jpy", "krw", "kwd", "bhd"]


@st.composite
def amounts(draw, too_precise: bool = False) -> tuple[str, str]:
    """(currency, positive decimal text) with at most the currency's decimals, or exactly one more
    (even a trailing zero is one decimal too many: "12.340" usd is refused, not read as 12.34)."""
    currency = draw(st.sampled_from(CURRENCIES))
    places = exponent(currency) + 1 if too_precise else draw(st.integers(0, exponent(currency)))
    whole = draw(st.integers(min_value=0, max_value=10**15 - 1))
    text = f"{whole:0{draw(st.integers(1, 3))}d}"  # leading zeros are allowed
    if places:
        text += f".{draw(st.integers(0, 10**places - 1)):0{places}d}"
    if Decimal(text) == 0:
        text = "1" + text
    return currency, text


def oracle(currency: str, text: str) -> int:
    minor = Decimal(text).scaleb(exponent(currency))
    assert minor == minor.to_integral_value()
    return int(minor)


@settings(max_examples=150, deadline=None)
@given(st.lists(amounts(), min_size=1, max_size=40))
def test_row_checks_parse_every_valid_amount_exactly(values):
    frame = pd.DataFrame({"amount": [t for _, t in values], "currency": [c for c, _ in values]}, dtype="str")
    checks = RowChecks(frame)
    minor = checks.amount("amount", frame["currency"], pd.Series(True, index=frame.index))
    assert checks.rejects().empty
    assert minor.tolist() == [oracle(c, t) for c, t in values]


@settings(max_examples=100, deadline=None)
@given(amounts(too_precise=True))
def test_one_decimal_too_many_is_rejected_not_rounded(value):
    currency, text = value
    frame = pd.DataFrame({"amount": [text], "currency": [currency]}, dtype="str")
    checks = RowChecks(frame)
    minor = checks.amount("amount", frame["currency"], pd.Series(True, index=frame.index))
    assert minor.isna().all()
    expected = f"more decimals than {currency} allows ({exponent(currency)} decimals)"
    assert checks.rejects()["reason"].tolist() == [expected]


_ids = itertools.count()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(amounts(), min_size=1, max_size=25))
def test_imported_amounts_are_stored_exactly(engine, tmp_path, values):
    if not table_rows(engine, schema.affiliate, "affiliate_id"):
        seed_affiliates(engine, "A1")
    batch = next(_ids)
    rows = [
        [f"P{batch}-{i}", "A1", f"O{batch}-{i}", text, currency, "2026-10-05T12:00:00Z"]
        for i, (currency, text) in enumerate(values)
    ]
    report = run_import(engine, ImportKind.COMMISSIONS, write_csv(tmp_path / f"p{batch}.csv", COMMISSION_HEADER, rows))
    assert (report.inserted, report.rejected_count) == (len(values), 0)
    stored = dict(table_rows(engine, schema.commission, "commission_id", "amount_minor"))
    assert [stored[row[0]] for row in rows] == [oracle(c, t) for c, t in values]
