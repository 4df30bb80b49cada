"""The item state machine in the database, failures paid once their cause clears, unpaid items carried
into the next month, and batch statuses that tell the truth. Sandbox over HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.aftercare.retry import apply_retry, plan_retry
from sorae_payouts.ledger import item_states
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.use_cases.month_end import unpaid_checker
from sorae_payouts_tests.execution.conftest import assert_paid_exactly_once, make_gateway
from sorae_payouts_tests.execution.conftest import item_states as states
from sorae_payouts_tests.execution.test_operations import _attempts, _fail_one
from sorae_payouts_tests.factory import NOV, OCT, add_commission, build_manifest, finalize_period

DEC_NOW = datetime(2026, 12, 10, tzinfo=UTC)
MIGRATION = Path(item_states.__file__).parent / "migrations/versions/0008_item_state_machine.py"


def _raw(engine, sql: str, **params) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.text(sql), params).rowcount


def _refused(engine, sql: str, **params) -> str:
    with pytest.raises(sa.exc.DBAPIError) as refused:
        _raw(engine, sql, **params)
    return str(refused.value)


def test_the_migration_enforces_exactly_the_code_table():
    spec = importlib.util.spec_from_file_location("rev0008", MIGRATION)
    frozen = importlib.util.module_from_spec(spec)
    src = MIGRATION.read_text()
    # The migration module needs alembic's `op` only when run; read its constants without running it.
    exec(compile(src.split("def _sqlite")[0], str(MIGRATION), "exec"), frozen.__dict__)
    assert frozen.TRANSITIONS == item_states.TRANSITIONS and frozen.INITIAL == item_states.INITIAL
    assert not item_states.allowed("posted", "pending") and item_states.allowed("failed", "pending")


def test_the_database_refuses_every_transition_outside_the_table(engine, sandbox, stripe_client):
    _fail_one(engine, sandbox, stripe_client)  # alice posted, bob failed (account_invalid)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.text("SELECT affiliate_id, payout_item_id FROM payout_item")).all())
    alice, bob = ids["alice"], ids["bob"]
    for status in ("pending", "processing", "failed", "carried_forward", "blocked"):  # a posted item stays posted
        assert "sorae ledger" in _refused(
            engine, "UPDATE payout_item SET status = :s WHERE payout_item_id = :i", s=status, i=alice
        )
    assert "not allowed by the state machine" in _refused(
        engine, "UPDATE payout_item SET status = 'pending' WHERE payout_item_id = :i", i=alice
    )
    assert "retry record" in _refused(
        engine, "UPDATE payout_item SET status = 'pending' WHERE payout_item_id = :i", i=bob
    )
    assert "carry record" in _refused(
        engine,
        "UPDATE payout_item SET status = 'carried_forward', carry_reason = NULL WHERE payout_item_id = :i",
        i=bob,
    )
    assert "not allowed" in _refused(
        engine, "UPDATE payout_item SET status = 'posted' WHERE payout_item_id = :i", i=bob
    )
    # The allowed hold-reason-only change and the allowed transition with its record still work.
    assert _raw(engine, "UPDATE payout_item SET hold_reason = 'looked at' WHERE payout_item_id = :i", i=alice) == 1
    assert item_states.allowed("posted", "reversed")
    assert states(engine)["alice"][0] == "posted" and states(engine)["bob"][0] == "failed"


def test_retry_writes_the_record_the_database_requires(engine, sandbox, stripe_client):
    _fail_one(engine, sandbox, stripe_client)
    with engine.connect() as conn:
        plan = plan_retry(conn, OCT)
    [moved] = apply_retry(engine, plan, now=DEC_NOW, requested_by="carol")
    with engine.connect() as conn:
        record = conn.execute(
            sa.text("SELECT payout_item_id, for_attempt_number, requested_by FROM payout_item_retry")
        ).one()
    assert tuple(record) == (moved, 1, "carol") and states(engine)["bob"][0] == "pending"
    assert "append-only" in _refused(engine, "DELETE FROM payout_item_retry")


def test_a_failure_whose_account_is_fixed_is_paid_by_refresh_with_attempt_2(engine, sandbox, stripe_client):
    accounts = _fail_one(engine, sandbox, stripe_client)
    gateway = make_gateway(sandbox)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM payout_batch")).scalar_one() == "completed_with_exceptions"
    untouched = refresh_batch(engine, gateway, OCT, now=DEC_NOW)  # still broken: nothing sent
    assert untouched.reattempted == 0 and states(engine)["bob"][0] == "failed"

    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['bob']}", {"invalid": False})
    report = refresh_batch(engine, gateway, OCT, now=DEC_NOW)
    assert report.reattempt_posted == 1
    assert [(n, s) for n, s, _, _ in _attempts(engine, "bob")] == [(1, "failed"), (2, "posted")]
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 2
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM payout_batch")).scalar_one() == "completed"
        assert conn.execute(sa.text("SELECT requested_by FROM payout_item_retry")).scalar_one() == "refresh"
    assert refresh_batch(engine, gateway, OCT, now=DEC_NOW).reattempted == 0  # nothing twice


def test_an_item_left_unpaid_at_next_month_end_is_carried_and_paid_once(engine, sandbox, stripe_client):
    from sorae_payouts.execution.pay_batch import execute_batch
    from sorae_payouts_tests.factory import approve

    accounts = _fail_one(engine, sandbox, stripe_client)  # bob failed in October, account still broken
    add_commission(engine, "bob", 1_000, earned_at=datetime(2026, 11, 10, tzinfo=UTC))
    finalize_period(engine, NOV, now=DEC_NOW, holding_days=3)
    policy = PayoutPolicy.from_major({"usd": "1.00"})
    checker = unpaid_checker(ProgramGateways(make_gateway(sandbox).config, engine))  # Stripe: not paid
    build_manifest(engine, NOV, policy=policy, now=DEC_NOW, unpaid_check=checker)
    build_manifest(engine, NOV, policy=policy, now=DEC_NOW, unpaid_check=checker)  # a rebuilt draft carries it once
    with engine.connect() as conn:
        old = conn.execute(
            sa.text(
                "SELECT status, carry_reason FROM payout_item WHERE batch_id = 'payout_2026-10' "
                "AND affiliate_id = 'bob'"
            )
        ).one()
        new = conn.execute(
            sa.text(
                "SELECT amount_minor, carried_in_minor, status FROM payout_item "
                "WHERE batch_id = 'payout_2026-11' AND affiliate_id = 'bob'"
            )
        ).one()
        conserved = __import__("sorae_payouts.month_end.audit", fromlist=["x"]).money_is_conserved(
            conn, NOV, ["default"]
        )["default"]
        plan = plan_retry(
            conn,
            OCT,
            item_ids=[
                conn.execute(
                    sa.text(
                        "SELECT payout_item_id FROM payout_item WHERE batch_id = 'payout_2026-10' AND affiliate_id = "
                        "'bob'"
                    )
                ).scalar_one()
            ],
        )
    assert tuple(old) == ("carried_forward", None)  # reviewed carry_reason untouched: the old hash holds
    assert tuple(new) == (7_000, 6_000, "pending") and conserved.passed, conserved.rows
    [refusal] = plan.refused
    assert "carried into payout_2026-11" in refusal["reason"] and not plan.retry

    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['bob']}", {"invalid": False})
    approve(engine, NOV, now=DEC_NOW)
    execute_batch(engine, make_gateway(sandbox), NOV)
    paid = stripe_client.v1.transfers.list(params={"destination": accounts["bob"], "limit": 100}).data
    assert sorted(t.amount for t in paid) == [7_000]  # October's 60.00 paid once, inside November's item
    refresh_batch(engine, make_gateway(sandbox), OCT, now=DEC_NOW)  # the closed item is never re-attempted
    assert len(stripe_client.v1.transfers.list(params={"destination": accounts["bob"], "limit": 100}).data) == 1


def test_a_batch_with_exceptions_never_shows_completed(engine, sandbox, stripe_client):
    from sorae_payouts.execution.outcomes import exception_counts

    _fail_one(engine, sandbox, stripe_client)
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM payout_batch")).scalar_one()
        counts = exception_counts(conn, "payout_2026-10")
    assert status == "completed_with_exceptions" and counts == {"failed": 1}


def test_history_promises_an_automatic_retry_only_for_what_refresh_retries():
    from sorae_payouts.portal.history import FAILURE_FIX
    from sorae_payouts.stripe_gateway.error_codes import CLEARED_BY_ACCOUNT_FIX

    assert set(FAILURE_FIX) == set(CLEARED_BY_ACCOUNT_FIX)
