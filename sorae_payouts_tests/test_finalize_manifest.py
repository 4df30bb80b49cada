"""Finalization and manifest building on both backends: adjustments, clawbacks, carried balances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sorae_payouts.month_end import audit
from sorae_payouts.month_end.finalize import FinalizeError
from sorae_payouts.month_end.manifest import ManifestError, PayoutPolicy
from sorae_payouts_tests.factory import (
    NOV,
    NOW,
    OCT,
    SEP,
    add_affiliate,
    add_commission,
    add_event,
    build_manifest,
    finalize_period,
    items,
)

POLICY = PayoutPolicy.from_major({"usd": "50.00", "jpy": "5000"})
DEC_NOW = datetime(2026, 12, 10, tzinfo=UTC)


def _checks_pass(engine, period):
    with engine.connect() as conn:
        results = [
            audit.money_is_conserved(conn, period, ["default"])["default"],
            audit.finalized_rows_unchanged(conn, period, ["default"])["default"],
            audit.one_item_per_affiliate_currency(conn, period, ["default"])["default"],
        ]
    assert all(r.passed for r in results), [r.summary for r in results]


def test_events_adjust_commissions_of_the_period(engine):
    add_affiliate(engine, "alice")
    cancelled = add_commission(engine, "alice", 10_000)
    reversed_ = add_commission(engine, "alice", 7_000)
    partial = add_commission(engine, "alice", 6_000)
    add_commission(engine, "alice", 4_000)
    add_event(engine, cancelled, "cancellation")
    add_event(engine, reversed_, "reversal")
    add_event(engine, partial, "partial_reversal", 2_500)
    add_event(engine, partial, "partial_reversal", 9_000)  # more than what is left: capped at 3_500

    report = finalize_period(engine, OCT, now=NOW, holding_days=3)
    assert (report.adjustments_booked, report.clawbacks_booked) == (4, 0)
    [usd] = report.snapshots
    assert (usd.commission_count, usd.gross_minor, usd.net_minor) == (4, 27_000, 4_000)

    manifest = build_manifest(engine, OCT, policy=POLICY, now=NOW)
    item = items(engine, manifest.batch_id)[("alice", "usd")]
    assert (item["amount_minor"], item["status"], item["carry_reason"]) == (4_000, "carried_forward", "below_minimum")
    _checks_pass(engine, OCT)


def test_finalize_waits_for_the_holding_window_and_names_the_date(engine):
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 1_000)
    with pytest.raises(FinalizeError, match=r"before 2026-11-04 00:00 UTC"):
        finalize_period(engine, OCT, now=datetime(2026, 11, 3, 23, 59, tzinfo=UTC), holding_days=3)
    assert finalize_period(engine, OCT, now=datetime(2026, 11, 4, tzinfo=UTC), holding_days=3)


def test_refinalizing_changes_nothing_and_says_so(engine):
    add_affiliate(engine, "alice")
    order = add_commission(engine, "alice", 1_000)
    first = finalize_period(engine, OCT, now=NOW, holding_days=3)
    add_event(engine, order, "cancellation")  # arrives after finalization: not applied to October
    again = finalize_period(engine, OCT, now=NOW + timedelta(days=1), holding_days=3)
    assert again.already_finalized and not first.already_finalized
    assert again.finalized_at == first.finalized_at
    assert again.snapshots == first.snapshots


def test_late_event_becomes_clawback_in_next_period_and_negative_balance_carries(engine):
    add_affiliate(engine, "bob")
    order = add_commission(engine, "bob", 8_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    october = build_manifest(engine, OCT, policy=POLICY, now=NOW)
    assert items(engine, october.batch_id)[("bob", "usd")]["status"] == "pending"

    add_event(engine, order, "reversal", occurred_at=datetime(2026, 11, 10, tzinfo=UTC))
    add_commission(engine, "bob", 3_000, earned_at=datetime(2026, 11, 12, tzinfo=UTC))
    report = finalize_period(engine, NOV, now=DEC_NOW, holding_days=3)
    assert (report.adjustments_booked, report.clawbacks_booked) == (0, 1)
    november = build_manifest(engine, NOV, policy=POLICY, now=DEC_NOW)
    item = items(engine, november.batch_id)[("bob", "usd")]
    assert (item["period_amount_minor"], item["amount_minor"], item["carry_reason"]) == (
        -5_000,
        -5_000,
        "negative_balance",
    )
    _checks_pass(engine, NOV)
    # October's history is untouched: its item still says 8_000 and its checks still pass.
    assert items(engine, october.batch_id)[("bob", "usd")]["amount_minor"] == 8_000
    _checks_pass(engine, OCT)


def test_below_minimum_carries_into_next_batch_per_currency(engine):
    add_affiliate(engine, "carol", currency="jpy")
    add_commission(engine, "carol", 3_000, currency="jpy")
    add_commission(engine, "carol", 1_000, currency="usd")
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    october = build_manifest(engine, OCT, policy=POLICY, now=NOW)
    oct_items = items(engine, october.batch_id)
    assert {k: v["status"] for k, v in oct_items.items()} == {
        ("carol", "jpy"): "carried_forward",
        ("carol", "usd"): "carried_forward",
    }

    add_commission(engine, "carol", 2_500, currency="jpy", earned_at=datetime(2026, 11, 2, tzinfo=UTC))
    finalize_period(engine, NOV, now=DEC_NOW, holding_days=3)
    november = build_manifest(engine, NOV, policy=POLICY, now=DEC_NOW)
    nov_items = items(engine, november.batch_id)
    jpy, usd = nov_items[("carol", "jpy")], nov_items[("carol", "usd")]
    assert (jpy["carried_in_minor"], jpy["amount_minor"], jpy["status"]) == (3_000, 5_500, "pending")
    assert (usd["carried_in_minor"], usd["period_amount_minor"], usd["status"]) == (1_000, 0, "carried_forward")
    _checks_pass(engine, NOV)


def test_manifests_are_built_in_period_order(engine):
    add_affiliate(engine, "dan")
    add_commission(engine, "dan", 9_000, earned_at=datetime(2026, 9, 3, tzinfo=UTC))
    add_commission(engine, "dan", 9_000)
    with pytest.raises(FinalizeError, match="2026-09"):
        finalize_period(engine, OCT, now=NOW, holding_days=3)
    finalize_period(engine, SEP, now=NOW, holding_days=3)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    with pytest.raises(ManifestError, match="2026-09"):
        build_manifest(engine, OCT, policy=POLICY, now=NOW)
    with pytest.raises(ManifestError, match="not finalized"):
        build_manifest(engine, NOV, policy=POLICY, now=NOW)
    build_manifest(engine, SEP, policy=POLICY, now=NOW)
    build_manifest(engine, OCT, policy=POLICY, now=NOW)
    with pytest.raises(ManifestError, match="later period 2026-10"):
        build_manifest(engine, SEP, policy=POLICY, now=NOW)


def test_draft_rebuild_is_stable_and_policy_changes_the_hash(engine):
    add_affiliate(engine, "erin")
    add_commission(engine, "erin", 4_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    first = build_manifest(engine, OCT, policy=POLICY, now=NOW)
    again = build_manifest(engine, OCT, policy=POLICY, now=NOW)
    assert (first.outcome, again.outcome, again.manifest_hash) == ("built", "unchanged", first.manifest_hash)
    lower = build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "30.00"}), now=NOW)
    assert lower.outcome == "rebuilt" and lower.manifest_hash != first.manifest_hash
    assert items(engine, lower.batch_id)[("erin", "usd")]["status"] == "pending"


def test_affiliate_without_account_carries_until_onboarded(engine):
    add_affiliate(engine, "fay", account=None)
    add_commission(engine, "fay", 9_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    october = build_manifest(engine, OCT, policy=POLICY, now=NOW)
    item = items(engine, october.batch_id)[("fay", "usd")]
    assert (item["status"], item["carry_reason"], item["amount_minor"]) == ("carried_forward", "not_onboarded", 9_000)
    with engine.begin() as conn:  # onboarding, as an affiliates import would record it
        conn.exec_driver_sql("UPDATE affiliate SET stripe_account_id = 'acct_fay' WHERE affiliate_id = 'fay'")
    finalize_period(engine, NOV, now=DEC_NOW, holding_days=3)
    november = build_manifest(engine, NOV, policy=POLICY, now=DEC_NOW)
    item = items(engine, november.batch_id)[("fay", "usd")]
    assert (item["status"], item["carried_in_minor"], item["stripe_account_id"]) == ("pending", 9_000, "acct_fay")
    _checks_pass(engine, NOV)


def test_manifest_hash_formula_is_stable(engine):
    """Approved batches keep verifying only while the hash is computed exactly as when they were approved:
    SHA-256 of the period and policy JSON, then each item's reviewed fields (NULL as empty) joined by the
    unit separator and ended by the record separator, in affiliate and currency order."""
    import hashlib
    import json

    add_affiliate(engine, "ann", account=None)
    add_affiliate(engine, "zed")
    add_commission(engine, "ann", 9_000)
    add_commission(engine, "zed", 6_100, currency="jpy")
    add_commission(engine, "zed", 7_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    report = build_manifest(engine, OCT, policy=POLICY, now=NOW)
    columns = (
        "affiliate_id",
        "currency",
        "stripe_account_id",
        "commission_count",
        "period_amount_minor",
        "carried_in_minor",
        "amount_minor",
        "carry_reason",
    )
    rows = sorted(items(engine, report.batch_id).values(), key=lambda r: (r["affiliate_id"], r["currency"]))
    digest = hashlib.sha256(json.dumps({"period": "2026-10-01", "policy": POLICY.as_json()}, sort_keys=True).encode())
    for row in rows:
        digest.update(("\x1f".join("" if row[c] is None else str(row[c]) for c in columns) + "\x1e").encode())
    assert [r["stripe_account_id"] for r in rows] == [None, "acct_zed", "acct_zed"]
    assert report.manifest_hash == digest.hexdigest() and report.item_count == 3
