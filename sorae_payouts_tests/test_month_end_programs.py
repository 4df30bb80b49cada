"""Month end across programs on both backends: programs with the same affiliate and commission ids kept
apart, one program refused while the others are closed, months ordered per program, and each
program's policy (holding window, minimums) applied and frozen into its own batch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sorae_payouts.month_end import audit
from sorae_payouts.month_end.batches import list_batches
from sorae_payouts.month_end.finalize import FinalizeError, finalize_programs
from sorae_payouts.month_end.manifest import ManifestError, PayoutPolicy
from sorae_payouts.month_end.manifest_build import build_manifests
from sorae_payouts.month_end.month_order import MonthOrderError, check_month_end_order, month_order_refusals
from sorae_payouts.registry.programs import set_program_status
from sorae_payouts_tests.factory import (
    NOV,
    NOW,
    OCT,
    SEP,
    add_affiliate,
    add_commission,
    add_event,
    add_program,
    build_manifest,
    finalize_period,
    items,
)

POLICY = PayoutPolicy.from_major({"usd": "50.00"})
BOTH = ["default", "acme"]


def _same_ids_in_two_programs(engine):
    """alice and bob in both programs, commissions com_a/com_b and order ids ord_a/ord_b in both, with
    different amounts; a cancellation of ord_b in acme only."""
    add_program(engine, "acme", name="Acme")
    for program, (a, b) in (("default", (9_000, 7_000)), ("acme", (12_000, 6_000))):
        add_affiliate(engine, "alice", program_id=program)
        add_affiliate(engine, "bob", program_id=program)
        add_commission(engine, "alice", a, order_id="ord_a", commission_id="com_a", program_id=program)
        add_commission(engine, "bob", b, order_id="ord_b", commission_id="com_b", program_id=program)
    add_event(engine, "ord_b", "cancellation", program_id="acme", event_id="evt_1")


def _checks(engine, period, programs):
    with engine.connect() as conn:
        return audit.manifest_checks(conn, period, programs)


def test_same_affiliate_and_commission_ids_are_finalized_and_built_apart(engine):
    _same_ids_in_two_programs(engine)
    finalized = finalize_programs(engine, OCT, BOTH, now=NOW, holding_days=3)
    assert finalized.refused == {}
    default, acme = finalized.reports["default"], finalized.reports["acme"]
    assert [(s.currency, s.commission_count, s.gross_minor, s.net_minor) for s in default.snapshots] == [
        ("usd", 2, 16_000, 16_000)
    ]
    assert [(s.currency, s.commission_count, s.gross_minor, s.net_minor) for s in acme.snapshots] == [
        ("usd", 2, 18_000, 12_000)
    ]
    assert (default.adjustments_booked, acme.adjustments_booked) == (0, 1)  # acme's event stays in acme

    built = build_manifests(engine, OCT, BOTH, policy=POLICY, now=NOW)
    assert {p: r.batch_id for p, r in built.reports.items()} == {
        "default": "payout_2026-10",
        "acme": "payout_acme_2026-10",
    }
    assert built.reports["acme"].manifest_hash != built.reports["default"].manifest_hash
    default_items, acme_items = items(engine, "payout_2026-10"), items(engine, "payout_acme_2026-10")
    assert {k[0]: (v["amount_minor"], v["program_id"]) for k, v in default_items.items()} == {
        "alice": (9_000, "default"),
        "bob": (7_000, "default"),
    }
    assert {k[0]: (v["amount_minor"], v["program_id"], v["carry_reason"]) for k, v in acme_items.items()} == {
        "alice": (12_000, "acme", None),
        "bob": (0, "acme", "zero_balance"),
    }
    checks = _checks(engine, OCT, BOTH)
    assert all(r.passed for program in checks.values() for r in program.values()), checks
    # The one-program forms read the same rows.
    assert build_manifest(engine, OCT, policy=POLICY, now=NOW, program_id="acme").outcome == "unchanged"
    with engine.connect() as conn:
        assert audit.money_is_conserved(conn, OCT, ["acme"])["acme"].rows[0]["items_minor"] == 12_000


def test_a_program_out_of_order_is_refused_alone(engine):
    _same_ids_in_two_programs(engine)
    add_commission(
        engine,
        "alice",
        1_000,
        earned_at=datetime(2026, 9, 3, tzinfo=UTC),
        program_id="acme",
        commission_id="com_sep",
    )
    with engine.connect() as conn:
        refused = month_order_refusals(conn, [OCT], BOTH)
        check_month_end_order(conn, [OCT])  # the default program may run
        with pytest.raises(MonthOrderError, match="program acme: .*2026-09 -> 2026-10"):
            check_month_end_order(conn, [OCT], program_id="acme")
    assert list(refused) == ["acme"]
    finalized = finalize_programs(engine, OCT, BOTH, now=NOW, holding_days=3)
    assert list(finalized.reports) == ["default"]
    assert finalized.refused["acme"].startswith(
        "month-end 2026-10 of program acme is blocked: the earlier month 2026-09 has 1 commission (com_sep)"
    )
    built = build_manifests(engine, OCT, BOTH, policy=POLICY, now=NOW)
    assert list(built.reports) == ["default"] and "not finalized" in built.refused["acme"]
    with pytest.raises(ManifestError, match="2026-10 of program acme is not finalized"):
        build_manifest(engine, OCT, policy=POLICY, now=NOW, program_id="acme")
    # acme closes September then October, in its own order; default's October is untouched.
    finalize_period(engine, SEP, now=NOW, holding_days=3, program_id="acme")
    finalize_period(engine, OCT, now=NOW, holding_days=3, program_id="acme")
    with pytest.raises(ManifestError, match="earlier finalized periods of program acme first: 2026-09"):
        build_manifest(engine, OCT, policy=POLICY, now=NOW, program_id="acme")
    build_manifest(engine, SEP, policy=POLICY, now=NOW, program_id="acme")
    assert build_manifest(engine, OCT, policy=POLICY, now=NOW, program_id="acme").outcome == "built"
    # A later default batch does not stop acme from rebuilding its own latest draft.
    add_commission(engine, "alice", 500, earned_at=datetime(2026, 11, 3, tzinfo=UTC))
    finalize_period(engine, NOV, now=datetime(2026, 12, 10, tzinfo=UTC), holding_days=3)
    build_manifest(engine, NOV, policy=POLICY, now=NOW)
    with pytest.raises(ManifestError, match="later period 2026-11"):
        build_manifest(engine, OCT, policy=POLICY, now=NOW)
    assert build_manifest(engine, OCT, policy=POLICY, now=NOW, program_id="acme").outcome == "unchanged"


def test_a_failing_check_fails_its_program_only(engine):
    _same_ids_in_two_programs(engine)
    finalize_programs(engine, OCT, BOTH, now=NOW, holding_days=3)
    build_manifests(engine, OCT, BOTH, policy=POLICY, now=NOW)
    with engine.begin() as conn:  # a draft's item edited behind the code's back (drafts are not frozen)
        conn.execute(
            sa.text(
                "UPDATE payout_item SET period_amount_minor = period_amount_minor + 1, "
                "amount_minor = amount_minor + 1 WHERE batch_id = 'payout_acme_2026-10' "
                "AND affiliate_id = 'alice'"
            )
        )
    checks = _checks(engine, OCT, BOTH)
    assert all(r.passed for r in checks["default"].values())
    assert not checks["acme"]["money_is_conserved"].passed and not checks["acme"]["finalized_rows_unchanged"].passed
    assert checks["acme"]["finalized_rows_unchanged"].rows == [
        {"currency": "usd", "snapshot": "alice: item 12001", "now": "alice: rows 12000"}
    ]


def test_holding_window_of_each_program(engine):
    _same_ids_in_two_programs(engine)
    add_program(engine, "slow", policy={"holding_days": 10})
    add_affiliate(engine, "alice", program_id="slow")
    add_commission(engine, "alice", 5_000, program_id="slow")
    nov_5 = datetime(2026, 11, 5, tzinfo=UTC)
    finalized = finalize_programs(engine, OCT, ["default", "acme", "slow"], now=nov_5, holding_days=3)
    assert sorted(finalized.reports) == BOTH[::-1]
    assert (
        "program slow cannot be finalized before 2026-11-11 00:00 UTC (month end + 10-day" in finalized.refused["slow"]
    )
    with pytest.raises(FinalizeError, match="before 2026-11-11"):
        finalize_period(engine, OCT, now=nov_5, holding_days=3, program_id="slow")
    report = finalize_period(engine, OCT, now=datetime(2026, 11, 11, tzinfo=UTC), holding_days=3, program_id="slow")
    assert (report.program_id, report.already_finalized, report.commission_count) == ("slow", False, 1)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT holding_days FROM commission_period WHERE program_id = 'slow'")).scalar() == 10
        )
    again = finalize_programs(engine, OCT, ["default", "acme", "slow"], now=NOW, holding_days=3)
    assert all(r.already_finalized for r in again.reports.values()) and not again.refused


def test_unknown_and_disabled_programs_are_refused(engine):
    _same_ids_in_two_programs(engine)
    set_program_status(engine, "acme", active=False, changed_by="test", now=NOW)
    finalized = finalize_programs(engine, OCT, ["default", "acme", "ghost"], now=NOW, holding_days=3)
    assert list(finalized.reports) == ["default"]
    assert "acme' is disabled" in finalized.refused["acme"] and "unknown program 'ghost'" in finalized.refused["ghost"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM commission_period")).scalar() == 1


def test_each_program_builds_under_its_own_minimums_and_lists_apart(engine):
    _same_ids_in_two_programs(engine)
    add_program(engine, "tall", policy={"minimum_minor": {"usd": 10_000}})
    add_affiliate(engine, "alice", program_id="tall")
    add_commission(engine, "alice", 9_000, program_id="tall")  # payable under 50.00, not under 100.00
    programs = ["default", "acme", "tall"]
    finalize_programs(engine, OCT, programs, now=NOW, holding_days=3)
    built = build_manifests(engine, OCT, programs, policy=POLICY, now=NOW)
    assert items(engine, "payout_2026-10")[("alice", "usd")]["status"] == "pending"
    assert items(engine, "payout_tall_2026-10")[("alice", "usd")]["carry_reason"] == "below_minimum"
    with engine.connect() as conn:
        batches = list_batches(conn)
        assert [(b.program_id, b.batch_id) for b in batches] == [
            ("acme", "payout_acme_2026-10"),
            ("default", "payout_2026-10"),
            ("tall", "payout_tall_2026-10"),
        ]
        assert batches[2].policy["minimum_minor"] == {"usd": 10_000}
        assert [b.batch_id for b in list_batches(conn, "tall")] == ["payout_tall_2026-10"]
        assert list_batches(conn, status="approved") == []
        assert len(list_batches(conn, status=("draft",), period_from=OCT, period_to=OCT)) == 3
        assert list_batches(conn, period_from=NOV) == [] and list_batches(conn, period_to=SEP) == []
    assert built.reports["tall"].totals[0].carried_minor == 9_000


def test_a_set_built_in_slices_equals_one_transaction(engine):
    programs = [f"m{n}" for n in range(4)]
    for n, program in enumerate(programs):
        add_program(engine, program)
        for affiliate in ("alice", "bob"):
            add_affiliate(engine, affiliate, program_id=program)
            add_commission(engine, affiliate, 6_000 + 100 * n, program_id=program)
    finalize_programs(engine, OCT, programs, now=NOW, holding_days=3)
    sliced = build_manifests(engine, OCT, programs, policy=POLICY, now=NOW, workers=2)
    assert sorted(sliced.reports) == programs and not sliced.refused
    assert {r.outcome for r in sliced.reports.values()} == {"built"}
    whole = build_manifests(engine, OCT, programs, policy=POLICY, now=NOW, workers=1)
    assert {p: (r.outcome, r.manifest_hash) for p, r in whole.reports.items()} == {
        p: ("unchanged", r.manifest_hash) for p, r in sliced.reports.items()
    }
    assert [items(engine, f"payout_m{n}_2026-10")[("bob", "usd")]["amount_minor"] for n in range(4)] == [
        6_000,
        6_100,
        6_200,
        6_300,
    ]
