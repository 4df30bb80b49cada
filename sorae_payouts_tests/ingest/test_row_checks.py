"""Row-level checks without a database: many variants of each class of bad input, fast."""

from __future__ import annotations

import pandas as pd
import pytest

from sorae_payouts.ingest import affiliates, commissions, order_events
from sorae_payouts.ingest.checks import RowChecks

GOOD_COMMISSION = {
    "commission_id": "K1",
    "affiliate_id": "A1",
    "order_id": "O1",
    "amount": "12.34",
    "currency": "usd",
    "earned_at": "2026-10-05T12:00:00Z",
}


def check(spec_module, row: dict[str, str]) -> list[tuple[str, str]]:
    chunk = pd.DataFrame({k: pd.Series([v], dtype="str") for k, v in row.items()})
    checks = RowChecks(chunk, first_row=7)
    spec_module.validate(chunk, checks)
    rejects = checks.rejects()
    assert rejects["row_no"].tolist() == [7] * len(rejects)
    return list(zip(rejects["col"], rejects["reason"], strict=False))


@pytest.mark.parametrize(
    "column, value, reason",
    [
        ("affiliate_id", "", "missing affiliate_id"),
        ("order_id", "", "missing order_id"),
        ("amount", "", "missing amount"),
        ("amount", "-12.34", "not a plain positive decimal"),
        ("amount", "+12.34", "not a plain positive decimal"),
        ("amount", "1e3", "not a plain positive decimal"),
        ("amount", "1,000.00", "not a plain positive decimal"),
        ("amount", "12.", "not a plain positive decimal"),
        ("amount", ".5", "not a plain positive decimal"),
        ("amount", "NaN", "not a plain positive decimal"),
        ("amount", "0", "amount must be positive"),
        ("amount", "99999999999999999999", "amount too large"),
        ("currency", "xyz", "unknown currency"),
        ("currency", "Usd", "unknown currency"),
        ("currency", "", "missing currency"),
        ("earned_at", "2026-10-05", "no time zone"),
        ("earned_at", "2026-10-05 12:00", "no time zone"),
        ("earned_at", "2026-13-05T12:00:00Z", "not an ISO 8601 timestamp"),
        ("earned_at", "yesterday", "not an ISO 8601 timestamp"),
        ("earned_at", "", "missing earned_at"),
        ("order_id", "O\x001", "NUL"),
    ],
)
def test_commission_row_checks(column, value, reason):
    found = check(commissions, {**GOOD_COMMISSION, column: value})
    assert len(found) == 1 and found[0][0] == column and reason in found[0][1], found


ZONED = [
    "2026-10-05T12:00:00Z",
    "2026-10-05T14:00:00+02:00",
    "2026-10-05T07:00:00-0500",
    "2026-10-05T14:00+02",
    "2026-10-05 12:00:00.5Z",
    "2026-10-05T12:00:00.123456+00:00",
    "2026-10-05T14:00:00 +02:00",
]


@pytest.mark.parametrize("value", ZONED)
def test_zoned_timestamps_are_accepted(value):
    assert check(commissions, {**GOOD_COMMISSION, "earned_at": value}) == []


def test_mixed_timestamp_formats_in_one_chunk_parse_row_by_row():
    chunk = pd.DataFrame({k: pd.Series([v] * len(ZONED), dtype="str") for k, v in GOOD_COMMISSION.items()})
    chunk["earned_at"] = pd.Series(ZONED, dtype="str")
    checks = RowChecks(chunk)
    parsed = commissions.validate(chunk, checks)
    assert checks.rejects().empty
    assert parsed["earned_utc"].dt.strftime("%H:%M").tolist() == ["12:00"] * len(ZONED)


def test_a_clean_row_has_no_problem():
    assert check(commissions, GOOD_COMMISSION) == []


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"kind": "refund"}, ("kind", "unknown kind (expected one of cancellation, reversal, partial_reversal)")),
        ({"kind": "partial_reversal", "amount": ""}, ("amount", "missing amount: a partial_reversal needs")),
        ({"occurred_at": "2026-10-05T12:00:00"}, ("occurred_at", "no time zone")),
        ({"event_id": ""}, ("event_id", "missing event_id")),
    ],
)
def test_order_event_row_checks(row, expected):
    good = {"event_id": "E1", "order_id": "O1", "kind": "reversal", "amount": "", "occurred_at": "2026-10-05T12:00Z"}
    found = check(order_events, {**good, **row})
    assert len(found) == 1 and found[0][0] == expected[0] and expected[1] in found[0][1], found


@pytest.mark.parametrize(
    "row, column, reason",
    [
        ({"email": "a.example.com"}, "email", "not an email address"),
        ({"email": "a@b@example.com"}, "email", "not an email address"),
        ({"email": "a @example.com"}, "email", "not an email address"),
        ({"stripe_account_id": "acc_123"}, "stripe_account_id", "not a Stripe connected account id"),
        ({"stripe_account_id": "acct_"}, "stripe_account_id", "not a Stripe connected account id"),
        ({"currency": "EUR"}, "currency", "unknown currency"),
        ({"name": ""}, "name", "missing name"),
    ],
)
def test_affiliate_row_checks(row, column, reason):
    good = {"affiliate_id": "A1", "name": "Ann", "email": "ann@example.com", "stripe_account_id": "", "currency": "eur"}
    assert check(affiliates, good) == []
    found = check(affiliates, {**good, **row})
    assert len(found) == 1 and found[0][0] == column and reason in found[0][1], found
