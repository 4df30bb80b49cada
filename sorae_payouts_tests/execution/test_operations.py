"""Operators' commands against the sandbox, on SQLite and PostgreSQL: retry, refresh, reconcile."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from sorae_payouts.cli import operations_cmd
from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch
from sorae_payouts_tests.execution.conftest import (
    API_KEY,
    assert_paid_exactly_once,
    crash_after_stripe_call,
    item_states,
    make_gateway,
    sandbox_transfers,
    seed_batch,
)
from sorae_payouts_tests.factory import OCT

runner = CliRunner()


@pytest.fixture
def cli(ledger_url, sandbox, monkeypatch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.url)
    monkeypatch.setenv("SORAE_STRIPE_RATE_LIMIT", "500")
    app = typer.Typer()
    operations_cmd.register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer's sub-command parsing
    return lambda *args: runner.invoke(app, list(args))


def _attempts(engine, affiliate):
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT a.attempt_number, a.state, a.error_code, a.idempotency_key FROM transfer_attempt a JOIN "
                "payout_item i "
                "ON i.payout_item_id = a.payout_item_id WHERE i.affiliate_id = :a ORDER BY a.attempt_number"
            ),
            {"a": affiliate},
        ).all()


def _fail_one(engine, sandbox, stripe_client):
    """Pay a batch of two; the second item's account is closed mid-run, so it fails (account_invalid)."""
    accounts = seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    closed = []

    def close_bob():
        if not closed:
            sandbox.admin("POST", f"/_sandbox/accounts/{accounts['bob']}", {"invalid": True})
            closed.append("bob")

    with engine.connect() as conn:
        order = conn.execute(sa.text("SELECT affiliate_id FROM payout_item ORDER BY payout_item_id")).scalars().all()
    assert order == ["alice", "bob"]
    execute_batch(engine, make_gateway(sandbox), OCT, settings=ExecutionSettings(workers=1), on_item_done=close_bob)
    assert item_states(engine)["bob"][0] == "failed"
    return accounts


def test_retry_after_the_account_is_fixed_pays_once_with_a_new_key(engine, sandbox, stripe_client, cli):
    accounts = _fail_one(engine, sandbox, stripe_client)
    [(_, _, code, old_key)] = _attempts(engine, "bob")
    assert code == "account_invalid"
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['bob']}", {"invalid": False})
    dry = cli("retry", "2026-10", "--error-code", "account_invalid", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    [would] = json.loads(dry.output)["would_send"]
    assert (would["affiliate_id"], would["amount_minor"], would["destination"]) == ("bob", 6_000, accounts["bob"])
    assert would["idempotency_key"] != old_key and would["idempotency_key"].endswith(":attempt-2")
    assert len(sandbox_transfers(stripe_client)) == 1 and _attempts(engine, "bob")[0][1] == "failed"  # dry run

    result = cli("retry", "2026-10", "--error-code", "account_invalid")
    assert result.exit_code == 0, result.output
    assert [(n, s) for n, s, _, _ in _attempts(engine, "bob")] == [(1, "failed"), (2, "posted")]
    assert _attempts(engine, "bob")[0][3] == old_key  # the failed attempt is untouched
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 2


def test_retrying_a_posted_item_is_refused(engine, sandbox, stripe_client, cli):
    _fail_one(engine, sandbox, stripe_client)
    with engine.connect() as conn:
        alice = conn.execute(
            sa.text("SELECT payout_item_id FROM payout_item WHERE affiliate_id = 'alice'")
        ).scalar_one()
    result = cli("retry", "2026-10", "--item", str(alice))
    assert result.exit_code == 1 and "already paid" in result.output
    assert len(_attempts(engine, "alice")) == 1 and len(sandbox_transfers(stripe_client)) == 1


def test_refresh_resolves_a_lost_answer_without_a_second_transfer(engine, sandbox, stripe_client, cli):
    seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    crash_after_stripe_call(engine, sandbox, {"alice"})
    assert item_states(engine)["alice"][0] == "processing"
    result = cli("refresh", "2026-10", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "batch_id": "payout_2026-10",
            "resolved": 1,
            "still_unknown": 0,
            "reversal_changes": 0,
            "account_changes": 0,
            "released_holds": 0,
            "reattempted": 0,
            "reattempt_posted": 0,
        }
    ]
    assert item_states(engine)["alice"] == ("posted", None)
    assert item_states(engine)["bob"][0] == "pending"  # refresh resolves, it does not send new work
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 1


def test_refresh_appends_reversals_and_account_changes_and_releases_holds(engine, sandbox, stripe_client, cli):
    accounts = seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['bob']}", {"transfers": "inactive"})
    execute_batch(engine, make_gateway(sandbox), OCT)
    [alice_transfer] = [t for t in sandbox_transfers(stripe_client)]
    stripe_client.v1.transfers.reversals.create(alice_transfer.id, params={"amount": 1_000})
    assert cli("refresh", "2026-10").exit_code == 0
    with engine.connect() as conn:
        reversals = conn.execute(sa.text("SELECT reversed, amount_reversed_minor FROM transfer_status_event")).all()
        accounts_seen = conn.execute(sa.text("SELECT transfers_capability FROM account_status_event")).scalars().all()
    assert [(bool(r), a) for r, a in reversals] == [(False, 1_000)] and accounts_seen == ["inactive"]
    assert item_states(engine)["bob"][0] == "pending" and item_states(engine)["bob"][1]  # still held

    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['bob']}", {"transfers": "active"})
    assert cli("refresh", "2026-10").exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM transfer_status_event")).scalar_one() == 1  # unchanged
        assert conn.execute(
            sa.text("SELECT transfers_capability FROM account_status_event ORDER BY event_pk")
        ).scalars().all() == ["inactive", "active"]
        history = conn.execute(
            sa.text(
                "SELECT old_status, new_status FROM payout_item_status_event e JOIN payout_item i "
                "ON i.payout_item_id = e.payout_item_id WHERE i.affiliate_id = 'bob' "
                "ORDER BY e.event_pk"
            )
        ).all()
    # Held, released, then paid by the same refresh: a cleared cause needs no person.
    assert [tuple(h) for h in history] == [
        ("pending", "pending"),
        ("pending", "pending"),
        ("pending", "processing"),
        ("processing", "posted"),
    ]
    assert item_states(engine)["bob"] == ("posted", None)
    execute_batch(engine, make_gateway(sandbox), OCT)  # nothing left to send
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 2


def test_reconcile_catches_a_transfer_behind_the_ledgers_back_and_an_amount_mismatch(
    engine, sandbox, stripe_client, cli
):
    accounts = seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    execute_batch(engine, make_gateway(sandbox), OCT)
    clean = cli("reconcile", "2026-10", "--json")
    assert clean.exit_code == 0 and json.loads(clean.output)["passed"] is True
    rogue = stripe_client.v1.transfers.create(
        params={"amount": 777, "currency": "usd", "destination": accounts["bob"], "transfer_group": "payout_2026-10"}
    )
    with engine.begin() as conn:  # ledger-side tampering, past the trigger that normally forbids it
        conn.exec_driver_sql(
            "DROP TRIGGER guard_transfer_attempt_update"
            + ("" if engine.dialect.name == "sqlite" else " ON transfer_attempt")
        )
        conn.exec_driver_sql("UPDATE transfer_attempt SET amount_minor = 5001 WHERE amount_minor = 5000")
    result = cli("reconcile", "2026-10", "--json")
    assert result.exit_code == 1
    drift = {(d["drift"], d["transfer_id"]) for d in json.loads(result.output)["drift"]}
    assert ("unknown_to_ledger", rogue.id) in drift
    assert any(kind == "mismatch" for kind, _ in drift) and len(drift) == 2
