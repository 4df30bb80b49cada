"""Money after the transfer, on SQLite and PostgreSQL, through the sandbox over HTTP: reversals seen by
refresh, decided by operators (owed again into next month / written off), reconciled, in history; and a
negative balance recovered by reversal under the recovery policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.aftercare.reconcile import reconcile_batch
from sorae_payouts.aftercare.recovery import (
    _store_request,
    negative_balances,
    recover_negative_balances,
    reversal_metadata,
)
from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.aftercare.retry import plan_retry
from sorae_payouts.aftercare.reversals import ReversalError, reversed_items
from sorae_payouts.cli import batch_cmd, reversals_cmd
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts.month_end import audit
from sorae_payouts.month_end.manifest import PayoutPolicy, owed_again_lines
from sorae_payouts.portal.history import affiliate_history
from sorae_payouts_tests.execution.conftest import API_KEY, make_gateway, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import (
    NOV,
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_event,
    approve,
    build_manifest,
    decide_reversal,
    finalize_period,
    items,
    operator_key,
    use_operator_key,
)

LATER = datetime(2027, 1, 10, tzinfo=UTC)
DEC = NOV.replace(month=12)
runner = CliRunner()


def _item_id(engine, batch_id, affiliate):
    return int(items(engine, batch_id)[(affiliate, "usd")]["payout_item_id"])


def _reverse(stripe_client, transfer_id, amount=None):
    params = {} if amount is None else {"amount": amount}
    return stripe_client.v1.transfers.reversals.create(transfer_id, params=params)


@pytest.fixture
def reversals_cli(ledger_url, sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    use_operator_key(monkeypatch, tmp_path, "tests")  # an operator of the default program (seed_batch approves)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.url)
    return lambda *args: runner.invoke(reversals_cmd.app, list(args))


def test_full_and_partial_reversal_decided_then_owed_again_into_next_month(
    engine, sandbox, stripe_client, reversals_cli
):
    seed_batch(engine, stripe_client, {"alice": 9_000, "bob": 6_000})
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    transfers = {t.metadata["affiliate_id"]: t.id for t in sandbox_transfers(stripe_client)}
    _reverse(stripe_client, transfers["alice"])  # full
    _reverse(stripe_client, transfers["bob"], 2_500)  # partial

    # Before refresh the ledger does not know: reconciliation (net of reversals) says so.
    with engine.connect() as conn:
        stale = reconcile_batch(conn, gateway, OCT)
    assert not stale.passed and {r["drift"] for r in stale.rows} == {"reversal_not_recorded"}

    report = refresh_batch(engine, gateway, OCT)
    assert len(report.reversal_changes) == 2
    assert refresh_batch(engine, gateway, OCT).reversal_changes == []  # same state: nothing appended
    alice_item = _item_id(engine, "payout_2026-10", "alice")
    with engine.connect() as conn:  # a reversed item is never retried: the reversed amount is decided instead
        refused = plan_retry(conn, OCT, item_ids=[alice_item]).refused
    assert "reversals resolve" in refused[0]["reason"]
    oct_items = items(engine, "payout_2026-10")
    assert (oct_items[("alice", "usd")]["status"], oct_items[("alice", "usd")]["reversed_minor"]) == ("reversed", 9_000)
    assert (oct_items[("bob", "usd")]["status"], oct_items[("bob", "usd")]["reversed_minor"]) == (
        "partially_reversed",
        2_500,
    )

    alice, bob = _item_id(engine, "payout_2026-10", "alice"), _item_id(engine, "payout_2026-10", "bob")
    with engine.connect() as conn:
        result = reconcile_batch(conn, gateway, OCT)
        assert result.passed, result.rows
        assert sorted((r["drift"], r["payout_item_id"]) for r in result.rows) == [
            ("reversed", str(alice)),
            ("reversed", str(bob)),
        ]
        accounted = audit.reversals_are_accounted(conn, OCT, ["default"])["default"]
        assert accounted.passed and accounted.rows[0]["reversal_pending_minor"] == 11_500
        assert accounted.rows[0]["net_paid_minor"] == 15_000 - 11_500
        [alice_history] = affiliate_history(conn, "alice")
        assert alice_history.status_code == "reversal_pending"

    shown = runner.invoke(batch_cmd.app, ["show", "2026-10"])
    assert "reversal_pending" in shown.output and "reversed 90.00 usd, reversal_pending 90.00 usd" in shown.output
    listed = json.loads(reversals_cli("list", "2026-10", "--json").output)
    assert {(r["affiliate_id"], r["state"], r["pending_minor"]) for r in listed} == {
        ("alice", "reversal_pending", 9_000),
        ("bob", "reversal_pending", 2_500),
    }

    refused = reversals_cli("resolve", str(bob), "--write-off")
    assert refused.exit_code == 1 and "reason" in refused.output
    assert reversals_cli("resolve", str(alice), "--owe-again", "--reason", "account replaced").exit_code == 0
    assert reversals_cli("resolve", str(bob), "--write-off", "--reason", "refund fraud").exit_code == 0
    with pytest.raises(ReversalError, match="nothing pending"):
        decide_reversal(engine, alice, "write_off", reason="y", now=LATER)
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.execute(sa.text("UPDATE reversal_decision SET amount_minor = 1"))

    with engine.connect() as conn:
        states = {i.affiliate_id: i for i in reversed_items(conn, OCT)}
        [alice_history] = affiliate_history(conn, "alice")
        [bob_history] = affiliate_history(conn, "bob")
    assert (states["alice"].owed_again_minor, states["alice"].pending_minor) == (9_000, 0)
    assert (states["bob"].written_off_minor, states["bob"].pending_minor) == (2_500, 0)
    assert alice_history.status.startswith("Reversed by") and "owed to you again" in alice_history.reason
    assert bob_history.status.startswith("Reversed by")

    # November: alice's owed-again 90.00 is carried in (one line says why); bob's written-off 25.00 is not.
    add_commission(engine, "alice", 1_000, earned_at=datetime(2026, 11, 5, tzinfo=UTC))
    finalize_period(engine, NOV, now=LATER, holding_days=3)
    build_manifest(engine, NOV, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=LATER)
    nov = items(engine, "payout_2026-11")
    assert (nov[("alice", "usd")]["carried_in_minor"], nov[("alice", "usd")]["amount_minor"]) == (9_000, 10_000)
    assert ("bob", "usd") not in nov
    with engine.connect() as conn:
        [line] = owed_again_lines(conn, "payout_2026-11")
        assert line["affiliate_id"] == "alice" and "owed again" in line["why"] and "tests" in line["why"]
        assert audit.money_is_conserved(conn, NOV, ["default"])["default"].passed
        assert audit.reversals_are_accounted(conn, OCT, ["default"])["default"].passed
    build_manifest(engine, NOV, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=LATER)  # draft rebuild
    assert items(engine, "payout_2026-11")[("alice", "usd")]["carried_in_minor"] == 9_000  # carried once
    approve(engine, NOV, now=LATER)
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="immutable"):
        conn.execute(sa.text("DELETE FROM owed_again_carry"))
    execute_batch(engine, gateway, NOV)
    nov_transfers = sandbox_transfers(stripe_client, "payout_2026-11")
    assert [(t.metadata["affiliate_id"], t.amount) for t in nov_transfers] == [("alice", 10_000)]


def test_negative_balance_recovered_by_reversal_under_the_recovery_policy(
    engine, sandbox, stripe_client, reversals_cli
):
    recover = PayoutPolicy.from_major({"usd": "1.00"}, negative_balance="recover_by_reversal")
    order = add_commission_pair(engine, stripe_client)
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    [oct_transfer] = sandbox_transfers(stripe_client)
    assert oct_transfer.amount == 9_000

    # November: the 60.00 order is cancelled (clawback), alice earns 10.00: balance -50.00.
    add_event(engine, order, "cancellation", occurred_at=datetime(2026, 11, 10, tzinfo=UTC))
    add_commission(engine, "alice", 1_000, earned_at=datetime(2026, 11, 5, tzinfo=UTC))
    finalize_period(engine, NOV, now=LATER, holding_days=3)
    build_manifest(engine, NOV, policy=recover, now=LATER)
    with engine.connect() as conn:
        assert negative_balances(conn, "payout_2026-11") == [
            {
                "affiliate_id": "alice",
                "currency": "usd",
                "amount_minor": -5_000,
                "months_carried": 1,
                "since": "2026-11",
            }
        ]
    shown = runner.invoke(batch_cmd.app, ["show", "2026-11"]).output
    assert "Negative balances (1; policy recover_by_reversal)" in shown and "-50.00 usd" in shown
    approve(engine, NOV, now=LATER)
    execute_batch(engine, gateway, NOV)

    report = recover_negative_balances(engine, gateway, NOV, now=LATER)
    assert report.recovered_minor == {"usd": 5_000} and not report.failed
    again = recover_negative_balances(engine, gateway, NOV, now=LATER)  # nothing left to recover
    assert again.requested == [] and again.unknown == 0
    transfer = stripe_client.v1.transfers.retrieve(oct_transfer.id)
    assert (transfer.amount_reversed, transfer.reversed) == (5_000, False)
    assert len(transfer.reversals.data) == 1
    with engine.connect() as conn:
        request = conn.execute(
            sa.text("SELECT state, idempotency_key, amount_minor FROM transfer_reversal_request")
        ).one()
        assert request.state == "succeeded" and request.amount_minor == 5_000
        # From business identity (paying account, program, month, affiliate, currency, transfer, sequence).
        assert request.idempotency_key == (
            f"sorae:v2:{gateway.paying_account()}:reversal:default:2026-11:alice:usd:{oct_transfer.id}:1"
        )
        [state] = reversed_items(conn, OCT)
        assert (state.status, state.reversed_minor, state.owed_again_minor, state.pending_minor) == (
            "partially_reversed",
            5_000,
            5_000,
            0,
        )
        assert reconcile_batch(conn, gateway, OCT).passed
        assert audit.reversals_are_accounted(conn, OCT, ["default"])["default"].passed
    # Refresh sees the same reversal state: no second event, no pending amount.
    assert refresh_batch(engine, gateway, OCT).reversal_changes == []

    # December: -50.00 carried in and +50.00 owed again cancel out; nothing carries negative any more.
    finalize_period(engine, DEC, now=LATER.replace(month=1, day=10), holding_days=3)
    build_manifest(engine, DEC, policy=recover, now=LATER)
    dec = items(engine, "payout_2026-12")[("alice", "usd")]
    assert (dec["carried_in_minor"], dec["amount_minor"], dec["carry_reason"]) == (0, 0, "zero_balance")
    with engine.connect() as conn:
        assert audit.money_is_conserved(conn, DEC, ["default"])["default"].passed
        assert negative_balances(conn, "payout_2026-12") == []


def test_recovery_crash_after_the_stripe_call_resends_the_same_key_and_reverses_once(engine, sandbox, stripe_client):
    recover = PayoutPolicy.from_major({"usd": "1.00"}, negative_balance="recover_by_reversal")
    order = add_commission_pair(engine, stripe_client)
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    [oct_transfer] = sandbox_transfers(stripe_client)
    add_event(engine, order, "cancellation", occurred_at=datetime(2026, 11, 10, tzinfo=UTC))
    finalize_period(engine, NOV, now=LATER, holding_days=3)
    build_manifest(engine, NOV, policy=recover, now=LATER)  # alice: -60.00
    approve(engine, NOV, now=LATER)
    # The process dies between Stripe's answer and the outcome commit: request stored, reversal made.
    identity = gateway.paying_account()
    item_id = _item_id(engine, "payout_2026-10", "alice")
    request = _store_request(
        engine, identity, NOV, "alice", "usd", item_id, oct_transfer.id, 6_000, LATER, debt_minor=6_000
    )
    assert gateway.reverse_transfer(
        oct_transfer.id, 6_000, request["idempotency_key"], reversal_metadata(request)
    ).reversal_id

    report = recover_negative_balances(engine, gateway, NOV, now=LATER)  # re-sends the same key only
    assert report.recovered_minor == {"usd": 6_000} and len(report.requested) == 1
    transfer = stripe_client.v1.transfers.retrieve(oct_transfer.id)
    assert (transfer.amount_reversed, len(transfer.reversals.data)) == (6_000, 1)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT state FROM transfer_reversal_request")).scalars().all() == ["succeeded"]
        [state] = reversed_items(conn, OCT)
        assert (state.reversed_minor, state.owed_again_minor, state.pending_minor) == (6_000, 6_000, 0)
        with pytest.raises(sa.exc.DBAPIError, match="immutable"):
            conn.execute(sa.text("UPDATE transfer_reversal_request SET amount_minor = 1"))


def add_commission_pair(engine, stripe_client) -> str:
    """alice earns 60.00 + 30.00 in October, paid in one 90.00 transfer; returns the 60.00 order id."""
    account = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    add_affiliate(engine, "alice", account=account)
    order = add_commission(engine, "alice", 6_000)
    add_commission(engine, "alice", 3_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW)
    approve(engine, OCT, now=NOW)
    return order


def test_reconcile_reports_a_transfer_outside_the_group_that_carries_the_batch_metadata(engine, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, {"alice": 5_000})
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    stripe_client.v1.transfers.create(
        params={  # sent for the batch by hand, without its transfer group
            "amount": 5_000,
            "currency": "usd",
            "destination": accounts["alice"],
            "metadata": {"batch_id": "payout_2026-10", "affiliate_id": "alice"},
        }
    )
    stripe_client.v1.transfers.create(
        params={  # another batch's: not this batch's business
            "amount": 100,
            "currency": "usd",
            "destination": accounts["alice"],
            "transfer_group": "payout_2026-09",
            "metadata": {"batch_id": "payout_2026-09"},
        }
    )
    with engine.connect() as conn:
        result = reconcile_batch(conn, gateway, OCT)
        quick = reconcile_batch(conn, gateway, OCT, scan_outside_group=False)
    assert not result.passed
    assert [(r["drift"], "group (none)" in r["stripe"]) for r in result.rows] == [("outside_group", True)]
    assert quick.passed and "outside the group not scanned" in quick.summary
    # The sandbox's `created` list filter, as Stripe's: a range hash or an exact time.
    listed = lambda created: stripe_client.v1.transfers.list(params={"created": created, "limit": 100}).data  # noqa: E731
    newest = max(t.created for t in listed({"gte": 0}))
    assert len(listed({"gte": 0})) == 3 and listed({"gt": newest}) == [] and listed({"lte": newest - 86_400}) == []
    assert {t.created for t in listed(newest)} == {newest}


def test_a_second_reversal_opens_a_new_pending_amount_and_decisions_never_exceed_it(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 6_000})
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    [transfer] = sandbox_transfers(stripe_client)
    item_id = _item_id(engine, "payout_2026-10", "alice")
    _reverse(stripe_client, transfer.id, 1_000)
    refresh_batch(engine, gateway, OCT)
    decide_reversal(engine, item_id, "write_off", reason="refunded order", now=LATER)
    _reverse(stripe_client, transfer.id)  # the rest: 50.00
    refresh_batch(engine, gateway, OCT)
    with engine.connect() as conn:
        [state] = reversed_items(conn, OCT)
    assert (state.status, state.reversed_minor, state.written_off_minor, state.pending_minor) == (
        "reversed",
        6_000,
        1_000,
        5_000,
    )
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="cannot exceed"):
        conn.execute(
            sa.text(
                "INSERT INTO reversal_decision (program_id, payout_item_id, affiliate_id, currency, amount_minor, "
                "decision, decided_by, decided_at, operator_id, key_id, signature) VALUES ('default', :i, 'alice', "
                "'usd', 5001, 'owe_again', 'tests', :now, 'tests', :k, :sig)"
            ),
            {"i": item_id, "now": LATER, "k": operator_key("tests").key_id, "sig": "A" * 88},
        )
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="only grows"):
        conn.execute(sa.text("UPDATE payout_item SET reversed_minor = 10 WHERE payout_item_id = :i"), {"i": item_id})
    decision = decide_reversal(engine, item_id, "owe_again", now=LATER)
    assert decision.amount_minor == 5_000
    with engine.connect() as conn:
        assert audit.reversals_are_accounted(conn, OCT, ["default"])["default"].passed
