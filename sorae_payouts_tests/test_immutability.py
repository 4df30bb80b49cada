"""Terminal records are immutable in the database itself: raw SQL that bypasses the code fails."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_event,
    approve,
    build_manifest,
    finalize_period,
)

POLICY = PayoutPolicy.from_major({"usd": "10.00"})


def _raw_fails(engine, statement: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="sorae ledger"), engine.begin() as conn:
        conn.exec_driver_sql(statement)


def _raw_ok(engine, statement: str) -> int:
    with engine.begin() as conn:
        return conn.exec_driver_sql(statement).rowcount


@pytest.fixture
def finalized(engine):
    add_affiliate(engine, "alice")
    order = add_commission(engine, "alice", 5_000)
    add_event(engine, order, "partial_reversal", 1_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    return engine


def test_open_period_commission_can_be_corrected(engine):
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 5_000)
    assert _raw_ok(engine, "UPDATE commission SET amount_minor = 6000") == 1


def test_commissions_must_name_a_known_affiliate_and_affiliates_stay(engine):
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 5_000)
    _raw_fails(
        engine,
        "INSERT INTO commission (program_id, commission_id, affiliate_id, order_id, amount_minor, "
        "currency, earned_at, period, imported_at) SELECT program_id, 'c2', 'nobody', 'o2', 100, 'usd', "
        "earned_at, period, imported_at FROM commission",
    )
    _raw_fails(engine, "DELETE FROM affiliate")
    _raw_fails(engine, "UPDATE affiliate SET affiliate_id = 'alicia'")
    assert _raw_ok(engine, "UPDATE affiliate SET email = 'new@example.com'") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE commission SET amount_minor = amount_minor + 1",
        "UPDATE commission SET affiliate_id = affiliate_id",
        "DELETE FROM commission",
        "INSERT INTO commission (program_id, commission_id, affiliate_id, order_id, amount_minor, currency, earned_at, "
        "period, imported_at) VALUES ('default', 'late', 'alice', 'o', 100, 'usd', '2026-10-31 10:00:00', "
        "'2026-10-01', "
        "'2026-11-20 00:00:00')",
        "UPDATE commission_adjustment SET amount_minor = 0",
        "DELETE FROM commission_adjustment",
        "UPDATE period_snapshot SET gross_minor = 1",
        "DELETE FROM commission_period",
        "UPDATE order_event SET kind = 'reversal'",
    ],
)
def test_finalized_records_reject_raw_sql(finalized, statement):
    _raw_fails(finalized, statement)


def test_approved_manifest_is_frozen_but_draft_is_not(finalized):
    build_manifest(finalized, OCT, policy=POLICY, now=NOW)
    assert _raw_ok(finalized, "UPDATE payout_item SET amount_minor = amount_minor, status = status") == 1
    approve(finalized, OCT, "ops")
    for statement in (
        "UPDATE payout_item SET amount_minor = 1, period_amount_minor = 1",
        "UPDATE payout_item SET stripe_account_id = 'acct_evil'",
        "DELETE FROM payout_item",
        "INSERT INTO payout_item (program_id, batch_id, affiliate_id, currency, commission_count, "
        "period_amount_minor, carried_in_minor, amount_minor, status) VALUES ('default', 'payout_2026-10', "
        "'alice', 'eur', 0, 1, 0, 1, 'pending')",
        "UPDATE payout_batch SET manifest_hash = 'x'",
        "UPDATE payout_batch SET status = 'draft'",
        "UPDATE payout_batch SET approved_by = 'someone else'",
        "DELETE FROM payout_batch",
    ):
        _raw_fails(finalized, statement)
    # Execution state may still move forward.
    assert _raw_ok(finalized, "UPDATE payout_batch SET status = 'completed'") == 1


def test_terminal_transfer_attempts_are_immutable(finalized):
    build_manifest(finalized, OCT, policy=POLICY, now=NOW)
    _raw_ok(
        finalized,
        "INSERT INTO transfer_attempt (payout_item_id, attempt_number, idempotency_key, state, "
        "amount_minor, currency, destination, created_at, updated_at) SELECT payout_item_id, 1, 'k1', "
        "'processing', amount_minor, currency, 'acct_alice', '2026-11-25 00:00:00', "
        "'2026-11-25 00:00:00' FROM payout_item",
    )
    assert _raw_ok(finalized, "UPDATE transfer_attempt SET state = 'posted', stripe_transfer_id = 'tr_1'") == 1
    _raw_fails(finalized, "UPDATE transfer_attempt SET stripe_transfer_id = 'tr_2'")
    _raw_fails(finalized, "DELETE FROM transfer_attempt")


def test_database_refuses_a_second_posted_attempt_for_one_item(finalized):
    build_manifest(finalized, OCT, policy=POLICY, now=NOW)
    for n in (1, 2):
        _raw_ok(
            finalized,
            "INSERT INTO transfer_attempt (payout_item_id, attempt_number, idempotency_key, state, "
            f"amount_minor, currency, destination, created_at, updated_at) SELECT payout_item_id, {n}, "
            f"'k{n}', 'processing', amount_minor, currency, 'acct_alice', '2026-11-25 00:00:00', "
            "'2026-11-25 00:00:00' FROM payout_item",
        )
    assert _raw_ok(finalized, "UPDATE transfer_attempt SET state = 'posted' WHERE attempt_number = 1") == 1
    with pytest.raises(sa.exc.IntegrityError), finalized.begin() as conn:
        conn.exec_driver_sql("UPDATE transfer_attempt SET state = 'posted' WHERE attempt_number = 2")
