"""Order event imports: the order's commission decides the currency (and decimals) of a partial
reversal; events without a commission, or ambiguous ones, are rejected."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sorae_payouts.ingest import ImportKind
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import (
    EVENT_HEADER,
    problems,
    read_rejects,
    reason_of,
    run_import,
    seed_affiliates,
    seed_commission,
    table_rows,
    write_csv,
)

E = ImportKind.ORDER_EVENTS
AT = "2026-10-20T09:30:00+02:00"


@pytest.fixture
def orders(engine):
    """O1: one usd commission, O2: one jpy, O3: one kwd, O4: two usd commissions."""
    seed_affiliates(engine, "A1", "A2")
    seed_commission(engine, "K1", "O1", 1000, "usd")
    seed_commission(engine, "K2", "O2", 5000, "jpy")
    seed_commission(engine, "K3", "O3", 2000, "kwd")
    seed_commission(engine, "K4a", "O4", 700, "usd")
    seed_commission(engine, "K4b", "O4", 300, "usd", affiliate_id="A2")
    return engine


def test_events_load_and_partial_amounts_use_the_commission_currency(orders, tmp_path):
    path = write_csv(
        tmp_path / "e.csv",
        EVENT_HEADER,
        [
            ["E1", "O1", "cancellation", "", AT],
            ["E2", "O2", "reversal", "not looked at", AT],  # the amount of a full reversal is ignored
            ["E3", "O2", "partial_reversal", "500", AT],  # jpy: no decimals
            ["E4", "O3", "partial_reversal", "0.250", AT],  # kwd: three decimals
            ["E5", "O1", "partial_reversal", "1.5", AT],  # usd: two decimals
            ["E6", "O4", "reversal", "", AT],  # a full reversal of a multi-commission order is clear
        ],
    )
    report = run_import(orders, E, path)
    assert (report.inserted, report.rejected_count) == (6, 0)
    at = datetime(2026, 10, 20, 7, 30, tzinfo=UTC)
    assert table_rows(orders, schema.order_event) == [
        ("E1", "O1", "cancellation", None, None, at),
        ("E2", "O2", "reversal", None, None, at),
        ("E3", "O2", "partial_reversal", 500, "jpy", at),
        ("E4", "O3", "partial_reversal", 250, "kwd", at),
        ("E5", "O1", "partial_reversal", 150, "usd", at),
        ("E6", "O4", "reversal", None, None, at),
    ]


@pytest.mark.parametrize(
    "bad, column, reason",
    [
        (["E2", "O9", "reversal", "", AT], "order_id", "order O9 has no imported commission: import commissions first"),
        (
            ["E2", "O4", "partial_reversal", "1.00", AT],
            "order_id",
            "partial_reversal is ambiguous: order O4 has 2 commissions",
        ),
        (["E2", "O2", "partial_reversal", "1.5", AT], "amount", "more decimals than jpy allows (0 decimals)"),
        (["E2", "O1", "partial_reversal", "0", AT], "amount", "amount must be positive"),
        (["E2", "O1", "partial_reversal", "10.01", AT], "amount", "more than the order's commission of 10.00 usd"),
        (["E2", "O1", "partial_reversal", "", AT], "amount", "missing amount: a partial_reversal needs"),
        (
            ["E2", "O1", "refund", "", AT],
            "kind",
            "unknown kind (expected one of cancellation, reversal, partial_reversal)",
        ),
        (["E2", "O1", "reversal", "", "2026-10-20T09:30:00"], "occurred_at", "timestamp has no time zone"),
    ],
)
def test_each_bad_event_is_rejected_and_the_valid_ones_still_load(orders, tmp_path, bad, column, reason):
    path = write_csv(
        tmp_path / "e.csv",
        EVENT_HEADER,
        [["E1", "O1", "reversal", "", AT], bad, ["E3", "O3", "partial_reversal", "0.001", AT]],
    )
    report = run_import(orders, E, path)
    assert problems(report) == [(2, column)]
    assert reason in reason_of(report, 2, column)
    assert table_rows(orders, schema.order_event, "event_id", "amount_minor") == [("E1", None), ("E3", 1)]
    assert read_rejects(report.rejects_path)[["row", *EVENT_HEADER]].values.tolist() == [["2", *bad]]


def test_reimport_is_a_no_op_and_a_changed_event_is_rejected(orders, tmp_path):
    rows = [["E1", "O1", "partial_reversal", "2.5", AT], ["E2", "O2", "cancellation", "", AT]]
    run_import(orders, E, write_csv(tmp_path / "e.csv", EVENT_HEADER, rows))
    before = table_rows(orders, schema.order_event, *schema.order_event.c.keys())
    seed_commission(orders, "K1b", "O1", 50)  # O1 now has two commissions: E1 is still the same event
    report = run_import(
        orders,
        E,
        write_csv(
            tmp_path / "e2.csv",
            EVENT_HEADER,
            [
                ["E1", "O1", "partial_reversal", "2.50", "2026-10-20T07:30:00Z"],  # same event, written differently
                ["E2", "O2", "reversal", "", AT],
            ],
        ),
    )
    assert (report.inserted, report.already_present) == (0, 1)
    assert problems(report) == [(2, "kind")]
    assert reason_of(report, 2, "kind").startswith("event_id E2 is already in the ledger with a different kind")
    assert table_rows(orders, schema.order_event, *schema.order_event.c.keys()) == before


def test_one_event_id_with_two_amounts_in_a_file_rejects_both(orders, tmp_path):
    path = write_csv(
        tmp_path / "e.csv",
        EVENT_HEADER,
        [
            ["E1", "O1", "partial_reversal", "5.00", AT],
            ["E1", "O1", "partial_reversal", "5.0", AT],  # identical to row 1
            ["E1", "O1", "partial_reversal", "5.01", AT],
            ["E2", "O1", "partial_reversal", "1.00", AT],
        ],
    )
    report = run_import(orders, E, path, chunk_rows=2)
    assert problems(report) == [(1, "event_id"), (2, "event_id"), (3, "event_id")]
    assert "also in rows 1, 2;" in reason_of(report, 3, "event_id")
    assert table_rows(orders, schema.order_event, "event_id") == [("E2",)]
