"""Executing approved batches against the sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sorae_payouts.execution.pay_batch import ExecutionRefused, ExecutionSettings, execute_batch
from sorae_payouts_tests.execution.conftest import (
    assert_paid_exactly_once,
    item_states,
    make_gateway,
    sandbox_transfers,
    seed_batch,
)
from sorae_payouts_tests.factory import OCT, approve


def test_happy_path_pays_every_item_once_and_rerun_sends_nothing(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 12_345, "bob": 6_000, "carol": 99_999})
    report = execute_batch(engine, make_gateway(sandbox), OCT)
    assert report.outcome.status == "completed" and report.outcome.count("posted") == 3
    paid = assert_paid_exactly_once(engine, stripe_client)
    assert len(paid) == 3
    transfer = stripe_client.v1.transfers.retrieve(next(iter(paid.values())))
    assert transfer.transfer_group == "payout_2026-10" and transfer.metadata["period"] == "2026-10"
    again = execute_batch(engine, make_gateway(sandbox), OCT)
    assert again.sent == 0 and len(sandbox_transfers(stripe_client)) == 3


def test_accounts_not_ready_are_held_and_stay_pending(engine, sandbox, stripe_client):
    accounts = seed_batch(
        engine, stripe_client, {"ok": 5_000, "nocap": 5_000, "closed": 5_000, "ghost": 5_000}, missing={"ghost"}
    )
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['nocap']}", {"transfers": "inactive"})
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['closed']}", {"invalid": True})
    report = execute_batch(engine, make_gateway(sandbox), OCT)
    states = item_states(engine)
    assert states["ok"] == ("posted", None)
    assert states["nocap"][0] == "pending" and "transfers capability is inactive" in states["nocap"][1]
    assert states["closed"][0] == "pending" and "payouts disabled" in states["closed"][1]
    assert states["ghost"][0] == "pending" and "not found" in states["ghost"][1]
    assert report.outcome.status == "completed_with_exceptions" and report.outcome.count("held") == 3
    assert_paid_exactly_once(engine, stripe_client)
    # Once the account is fixed, the next run pays the held item (and only it).
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['nocap']}", {"transfers": "active"})
    execute_batch(engine, make_gateway(sandbox), OCT)
    assert item_states(engine)["nocap"] == ("posted", None)
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 2


def test_a_transfer_refused_by_stripe_fails_alone(engine, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, {"a1": 5_000, "a2": 6_000, "a3": 7_000})
    flipped = []

    def break_the_last_account():  # after the first item: the account of the last item gets closed
        if not flipped:
            with engine.connect() as conn:
                last = conn.execute(
                    sa.text("SELECT affiliate_id FROM payout_item ORDER BY payout_item_id DESC LIMIT 1")
                ).scalar_one()
            sandbox.admin("POST", f"/_sandbox/accounts/{accounts[last]}", {"invalid": True})
            flipped.append(last)

    report = execute_batch(
        engine, make_gateway(sandbox), OCT, settings=ExecutionSettings(workers=1), on_item_done=break_the_last_account
    )
    states = item_states(engine)
    assert [a for a, (s, _) in states.items() if s == "failed"] == flipped
    assert sum(1 for s, _ in states.values() if s == "posted") == 2
    with engine.connect() as conn:
        code, state = conn.execute(
            sa.text(
                "SELECT a.error_code, a.state FROM transfer_attempt a JOIN payout_item i "
                "ON i.payout_item_id = a.payout_item_id WHERE i.affiliate_id = :a"
            ),
            {"a": flipped[0]},
        ).one()
    assert (code, state) == ("account_invalid", "failed")
    # nothing pending or processing, but failed items await a fix: never `completed`
    assert report.outcome.status == "completed_with_exceptions"
    assert_paid_exactly_once(engine, stripe_client)


def test_balance_shortfall_stops_before_any_transfer(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000, "kenji": 3_000}, currency="usd")
    balance = {e.currency: e.amount for e in stripe_client.v1.balance.retrieve().available}["usd"]
    stripe_client.v1.transfers.create(
        params={
            "amount": balance - 6_000,
            "currency": "usd",
            "destination": stripe_client.v1.accounts.list().data[0].id,
        }
    )
    with pytest.raises(ExecutionRefused, match=r"usd: need 80.00 usd, available 60.00 usd"):
        execute_batch(engine, make_gateway(sandbox), OCT)
    assert sandbox_transfers(stripe_client) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM transfer_attempt")).scalar_one() == 0


def test_unapproved_or_changed_batch_is_refused(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000}, approve=False)
    with pytest.raises(ExecutionRefused, match="draft, not approved"):
        execute_batch(engine, make_gateway(sandbox), OCT)
    approve(engine, OCT, "tests")
    with engine.begin() as conn:  # simulate a manifest edited behind the triggers' back after approval
        conn.exec_driver_sql(
            "DROP TRIGGER guard_payout_item_update" + ("" if engine.dialect.name == "sqlite" else " ON payout_item")
        )
        conn.exec_driver_sql(
            "UPDATE payout_item SET amount_minor = amount_minor + 1, period_amount_minor = period_amount_minor + 1"
        )
    with pytest.raises(ExecutionRefused, match="no longer match the approved manifest"):
        execute_batch(engine, make_gateway(sandbox), OCT)
    assert sandbox_transfers(stripe_client) == []
