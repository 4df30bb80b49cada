"""A program paying from the merchant's own Stripe platform account (a second sandbox platform, over
HTTP), on SQLite and PostgreSQL: its key, its connected accounts, its group and keys, and the
operations (retry, refresh, reconcile) through the same account."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sorae_payouts.aftercare.reconcile import reconcile_batch
from sorae_payouts.aftercare.recovery import recover_negative_balances
from sorae_payouts.aftercare.refresh import refresh_batch, refreshable_periods
from sorae_payouts.aftercare.retry import execute_retry, plan_retry
from sorae_payouts.aftercare.reversals import reversed_items
from sorae_payouts.execution.pay_batch import ExecutionRefused, ExecutionSettings, execute_batch, utcnow
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.registry.paying_accounts import PayingAccountError, program_gateway
from sorae_payouts.registry.programs import get_program, set_program_status
from sorae_payouts_tests.execution.conftest import (
    add_program,
    attempts_of,
    make_gateway,
    program_items,
    sandbox_transfers,
    seed_batch,
)
from sorae_payouts_tests.factory import (
    NOV,
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_event,
    approve,
    build_manifest,
    finalize_period,
)

LATER = datetime(2027, 1, 10, tzinfo=UTC)


def _acme_gateway(engine, sandbox):
    with engine.connect() as conn:
        return program_gateway(make_gateway(sandbox).config, get_program(conn, "acme"))


def test_a_program_on_its_own_account_pays_with_its_key_accounts_group_and_keys(
    engine, sandbox, stripe_client, second_platform
):
    add_program(engine, "acme", "env:ACME_STRIPE_KEY")
    platform_gateway = make_gateway(sandbox)
    seed_batch(engine, stripe_client, {"alice": 5_000})  # the default program, alone on the platform
    acme = seed_batch(engine, second_platform, {"alice": 6_000, "bob": 7_000}, program_id="acme")
    with pytest.raises(ExecutionRefused, match="acme pays from env:ACME_STRIPE_KEY, but the Stripe gateway given"):
        execute_batch(engine, platform_gateway, OCT, program_id="acme")
    assert attempts_of(engine, "acme") == []

    acme_gateway = _acme_gateway(engine, sandbox)
    report = execute_batch(engine, acme_gateway, OCT, program_id="acme")
    assert report.outcome.status == "completed"
    own = sandbox_transfers(second_platform, "payout_acme_2026-10")
    assert sorted((t.destination, t.amount) for t in own) == sorted([(acme["alice"], 6_000), (acme["bob"], 7_000)])
    assert sandbox_transfers(stripe_client, "payout_acme_2026-10") == []  # nothing left the platform's balance
    account = acme_gateway.paying_account()
    assert account != platform_gateway.paying_account()
    assert {a.idempotency_key for a in attempts_of(engine, "acme")} == {
        f"sorae:v2:{account}:acme:2026-10:{name}:usd:attempt-1" for name in ("alice", "bob")
    }

    # The default program is still alone on the platform account: paid from the balance as before.
    assert execute_batch(engine, platform_gateway, OCT).outcome.status == "completed"
    [default_alice] = attempts_of(engine, "default")
    assert default_alice.idempotency_key.startswith(f"sorae:v2:{platform_gateway.paying_account()}:default:")
    assert len(sandbox_transfers(stripe_client, "payout_2026-10")) == 1


def test_an_account_of_another_platform_is_held_not_paid(engine, sandbox, stripe_client, second_platform):
    add_program(engine, "acme", "env:ACME_STRIPE_KEY")
    platform_account = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    seed_batch(
        engine, second_platform, {"alice": 6_000, "bob": 7_000}, program_id="acme", accounts={"bob": platform_account}
    )  # bob's account belongs to Sorae's platform, not acme's
    execute_batch(engine, _acme_gateway(engine, sandbox), OCT, program_id="acme")
    items = program_items(engine, "acme")
    assert items["alice"] == ("posted", None)
    assert items["bob"][0] == "pending" and "not connected to this platform" in items["bob"][1]


def test_retry_refresh_and_reconcile_go_through_the_program_account(engine, sandbox, stripe_client, second_platform):
    add_program(engine, "acme", "env:ACME_STRIPE_KEY")
    acme = seed_batch(engine, second_platform, {"alice": 6_000, "bob": 7_000}, program_id="acme")
    gateway = _acme_gateway(engine, sandbox)
    closed = []

    def close_bob():  # after alice's transfer: bob's account closes, his transfer fails
        if not closed:
            sandbox.admin("POST", f"/_sandbox/accounts/{acme['bob']}", {"invalid": True})
            closed.append(True)

    execute_batch(
        engine, gateway, OCT, program_id="acme", settings=ExecutionSettings(workers=1), on_item_done=close_bob
    )
    assert program_items(engine, "acme")["bob"][0] == "failed"
    sandbox.admin("POST", f"/_sandbox/accounts/{acme['bob']}", {"invalid": False})
    with engine.connect() as conn:
        plan = plan_retry(conn, OCT, program_id="acme", paying_account=gateway.paying_account())
        assert refreshable_periods(conn, program_id="acme") == [OCT] and refreshable_periods(conn) == []
    [retry] = plan.retry
    assert retry["next_idempotency_key"] == f"sorae:v2:{gateway.paying_account()}:acme:2026-10:bob:usd:attempt-2"
    set_program_status(engine, "acme", active=False, changed_by="test", now=NOW)  # a paused merchant: no retry
    with pytest.raises(ExecutionRefused, match="program acme is disabled: nothing is retried"):
        execute_retry(engine, gateway, plan, now=utcnow())
    assert program_items(engine, "acme")["bob"][0] == "failed"  # refused before the item moved
    set_program_status(engine, "acme", active=True, changed_by="test", now=NOW)
    execute_retry(engine, gateway, plan, now=utcnow())
    assert program_items(engine, "acme")["bob"] == ("posted", None)

    [alice_transfer] = [
        t for t in sandbox_transfers(second_platform, "payout_acme_2026-10") if t.destination == acme["alice"]
    ]
    second_platform.v1.transfers.reversals.create(alice_transfer.id, params={"amount": 1_000})
    refreshed = refresh_batch(engine, gateway, OCT, program_id="acme")
    assert refreshed.batch_id == "payout_acme_2026-10" and len(refreshed.reversal_changes) == 1
    with engine.connect() as conn:
        reconciled = reconcile_batch(conn, gateway, OCT, program_id="acme")
        assert reconciled.passed, reconciled.rows
        assert "group payout_acme_2026-10" in reconciled.summary
        assert [r["drift"] for r in reconciled.rows] == ["reversed"]
        with pytest.raises(PayingAccountError):  # never read through another account's key
            reconcile_batch(conn, make_gateway(sandbox), OCT, program_id="acme")
        reversed_minor = conn.execute(
            sa.text("SELECT reversed_minor FROM payout_item WHERE program_id = 'acme' AND affiliate_id = 'alice'")
        ).scalar_one()
    assert program_items(engine, "acme")["alice"][0] == "partially_reversed" and reversed_minor == 1_000


def test_negative_balance_recovery_reverses_through_the_program_account(engine, sandbox, second_platform):
    add_program(engine, "acme", "env:ACME_STRIPE_KEY")
    account = second_platform.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    add_affiliate(engine, "alice", account=account, program_id="acme")
    order = add_commission(engine, "alice", 6_000, program_id="acme")
    add_commission(engine, "alice", 3_000, program_id="acme")
    finalize_period(engine, OCT, now=NOW, holding_days=3, program_id="acme")
    build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW, program_id="acme")
    approve(engine, OCT, now=NOW, program_id="acme")
    gateway = _acme_gateway(engine, sandbox)
    execute_batch(engine, gateway, OCT, program_id="acme")
    [oct_transfer] = sandbox_transfers(second_platform, "payout_acme_2026-10")
    # November: the 60.00 order is cancelled: alice owes 60.00, recovered by reversal under the policy.
    add_event(engine, order, "cancellation", occurred_at=datetime(2026, 11, 10, tzinfo=UTC), program_id="acme")
    finalize_period(engine, NOV, now=LATER, holding_days=3, program_id="acme")
    recover = PayoutPolicy.from_major({"usd": "1.00"}, negative_balance="recover_by_reversal")
    build_manifest(engine, NOV, policy=recover, now=LATER, program_id="acme")
    approve(engine, NOV, now=LATER, program_id="acme")
    with pytest.raises(PayingAccountError):  # never through Sorae's account
        recover_negative_balances(engine, make_gateway(sandbox), NOV, program_id="acme", now=LATER)
    report = recover_negative_balances(engine, gateway, NOV, program_id="acme", now=LATER)
    assert report.batch_id == "payout_acme_2026-11" and report.recovered_minor == {"usd": 6_000}
    assert second_platform.v1.transfers.retrieve(oct_transfer.id).amount_reversed == 6_000
    with engine.connect() as conn:
        key, program = conn.execute(sa.text("SELECT idempotency_key, program_id FROM transfer_reversal_request")).one()
        decision = conn.execute(sa.text("SELECT program_id, decision FROM reversal_decision")).one()
        [state] = reversed_items(conn, OCT, program_id="acme")
        assert reversed_items(conn, OCT) == []  # the default program has none
    assert key == f"sorae:v2:{gateway.paying_account()}:reversal:acme:2026-11:alice:usd:{oct_transfer.id}:1"
    assert program == "acme" and tuple(decision) == ("acme", "owe_again")
    assert (state.program_id, state.reversed_minor, state.pending_minor) == ("acme", 6_000, 0)
