"""Exactly-once that holds when the ledger is re-created, restored or edited (issue 7, point 1), on
SQLite and PostgreSQL against the sandbox over HTTP. Each test ends with `assert_paid_exactly_once`."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
import sqlalchemy as sa

from sorae_payouts.execution import attempts as ledger
from sorae_payouts.execution.anomalies import list_anomalies
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts.execution.pay_items import ExecutionReport, ExecutionRun, ExecutionSettings, utcnow
from sorae_payouts.ledger.database import create_ledger_engine, upgrade
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.conftest import _pg_admin, _pg_url, make_ledger_url
from sorae_payouts_tests.execution.conftest import (
    assert_paid_exactly_once,
    crash_after_stripe_call,
    item_states,
    later,
    make_gateway,
    sandbox_transfers,
    seed_batch,
)
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    approve,
    build_manifest,
    finalize_period,
)

FIVE = {"alice": 5_000, "bob": 6_000, "carol": 7_000, "dave": 8_000, "erin": 9_000}
DAY_AND_AN_HOUR = 25 * 3600


def _seed(engine, accounts: dict[str, str], amounts: dict[str, int], *, approve: bool = True) -> None:
    """What importing the same files builds: the same affiliates, accounts and commissions."""
    for name, amount in amounts.items():
        add_affiliate(engine, name, account=accounts[name])
        add_commission(engine, name, amount)
    if approve:
        _close_month(engine)


def _close_month(engine) -> None:
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW)
    approve(engine, OCT)


@pytest.fixture
def other_ledger(ledger_url, tmp_path, request):
    """Returns a function making another empty, migrated ledger on the same backend."""
    engines = []

    def make(name: str):
        if ledger_url.startswith("sqlite"):
            engine = create_ledger_engine(f"sqlite:///{tmp_path / name}")
            upgrade(engine)
        else:
            engine = create_ledger_engine(make_ledger_url("postgres", tmp_path, request))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def backup(ledger_url, tmp_path, request):
    """Returns a function copying the ledger as it is now (SQLite file copy / CREATE DATABASE TEMPLATE)."""
    engines = []

    def take(engine):
        engine.dispose()  # no open connection may hold the source
        if ledger_url.startswith("sqlite"):
            target = tmp_path / f"backup_{uuid.uuid4().hex[:6]}.sqlite3"
            with sqlite3.connect(sa.engine.make_url(ledger_url).database) as src, sqlite3.connect(target) as dst:
                src.backup(dst)
            copy = create_ledger_engine(f"sqlite:///{target}")
        else:
            name = f"sorae_backup_{uuid.uuid4().hex[:12]}"
            _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{sa.engine.make_url(ledger_url).database}"')
            request.addfinalizer(lambda: _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            copy = create_ledger_engine(_pg_url(name))
        engines.append(copy)
        return copy

    yield take
    for engine in engines:
        engine.dispose()


def _keys(engine) -> set[str]:
    with engine.connect() as conn:
        return {
            k for (k,) in conn.execute(sa.text("SELECT idempotency_key FROM transfer_attempt WHERE state = 'posted'"))
        }


def test_a_second_ledger_from_the_same_files_adopts_and_pays_nothing(engine, other_ledger, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, FIVE)
    assert execute_batch(engine, make_gateway(sandbox), OCT).outcome.count("posted") == 5
    second = other_ledger("second.sqlite3")
    _seed(second, accounts, FIVE)
    report = execute_batch(second, make_gateway(sandbox), OCT)
    assert report.sent == 0 and report.adopted == 5 and report.group_list_requests == 1
    assert len(sandbox_transfers(stripe_client)) == 5
    assert {s for s, _ in item_states(second).values()} == {"posted"}
    assert _keys(second) == _keys(engine)  # the same business identity derives the same keys
    with second.connect() as conn:
        kinds = [a["kind"] for a in list_anomalies(conn, "payout_2026-10")]
        notes = conn.execute(sa.text("SELECT note FROM transfer_attempt")).scalars().all()
    assert kinds == ["adopted_from_stripe"] * 5 and all(n.startswith("adopted from Stripe") for n in notes)
    assert execute_batch(second, make_gateway(sandbox), OCT).sent == 0
    assert_paid_exactly_once(second, stripe_client)
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 5


def test_b_ledger_restored_from_a_backup_before_execution_pays_nothing_after_25h(
    engine, backup, sandbox, stripe_client
):
    seed_batch(engine, stripe_client, FIVE)
    restored = backup(engine)
    execute_batch(engine, make_gateway(sandbox), OCT)
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": DAY_AND_AN_HOUR})  # Stripe forgot the keys
    assert sandbox.admin("GET", "/_sandbox/stats")["idempotency_keys"] == 0
    report = execute_batch(restored, make_gateway(sandbox), OCT, clock=later(25))
    assert report.sent == 0 and report.adopted == 5
    assert len(sandbox_transfers(stripe_client)) == 5
    assert _keys(restored) == _keys(engine)
    assert len(assert_paid_exactly_once(restored, stripe_client)) == 5


def test_c_restored_ledger_with_one_changed_amount_blocks_that_item_and_pays_nothing(
    engine, backup, sandbox, stripe_client
):
    accounts = {
        name: stripe_client.v1.accounts.create(
            params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
        ).id
        for name in FIVE
    }
    _seed(engine, accounts, FIVE, approve=False)
    # Backed up before the month was closed: the restored ledger then imports one more commission for bob.
    restored = backup(engine)
    _close_month(engine)
    execute_batch(engine, make_gateway(sandbox), OCT)
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": DAY_AND_AN_HOUR})
    add_commission(restored, "bob", 1_000)
    _close_month(restored)
    report = execute_batch(restored, make_gateway(sandbox), OCT, clock=later(25))
    assert report.sent == 0 and report.adopted == 4
    status, reason = item_states(restored)["bob"]
    assert status == "blocked"
    bob_transfer = [t for t in sandbox_transfers(stripe_client) if t.metadata["affiliate_id"] == "bob"]
    assert reason.startswith(f"already_paid_outside_this_ledger: {bob_transfer[0].id}") and "70.00 usd" in reason
    assert len(sandbox_transfers(stripe_client)) == 5 and len(bob_transfer) == 1
    assert accounts["bob"] == bob_transfer[0].destination
    assert execute_batch(restored, make_gateway(sandbox), OCT).sent == 0  # blocked stays blocked
    with restored.connect() as conn:
        kinds = sorted(a["kind"] for a in list_anomalies(conn, "payout_2026-10"))
    assert kinds == ["adopted_from_stripe"] * 4 + ["already_paid_outside_this_ledger"]
    assert len(assert_paid_exactly_once(restored, stripe_client)) == 4


def test_d_run_killed_after_stripe_committed_pays_nothing_again_with_the_clock_25h_ahead(
    engine, sandbox, stripe_client
):
    seed_batch(engine, stripe_client, FIVE)
    crash_after_stripe_call(engine, sandbox, set(FIVE))
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": DAY_AND_AN_HOUR})
    report = execute_batch(engine, make_gateway(sandbox, retries=0), OCT, clock=later(25))
    assert report.sent == 0 and report.resolved_by_lookup == 5
    assert len(sandbox_transfers(stripe_client)) == 5
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 5


def _force_status(engine, item_id: int, status: str) -> None:
    """An operator's hand edit, past any status trigger (the claim must refuse on its own)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))  # no triggers
            conn.execute(
                sa.text("UPDATE payout_item SET status = :s WHERE payout_item_id = :i"), {"s": status, "i": item_id}
            )
            return
        triggers = conn.execute(
            sa.text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND "
                "tbl_name = 'payout_item' AND sql LIKE '%BEFORE UPDATE%'"
            )
        ).all()
        for name, _ in triggers:
            conn.execute(sa.text(f"DROP TRIGGER {name}"))
        conn.execute(
            sa.text("UPDATE payout_item SET status = :s WHERE payout_item_id = :i"), {"s": status, "i": item_id}
        )
        for _, sql in triggers:
            conn.execute(sa.text(sql))


def test_item_with_a_posted_attempt_is_never_claimed_again_even_if_set_back_to_pending(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    execute_batch(engine, make_gateway(sandbox), OCT)
    with engine.connect() as conn:
        alice = conn.execute(sa.text("SELECT payout_item_id FROM payout_item WHERE affiliate_id = 'alice'")).scalar()
    _force_status(engine, alice, "pending")
    with engine.connect() as conn:
        [item] = [i for i in ledger.work_items(conn, "payout_2026-10") if i.payout_item_id == alice]
    gateway = make_gateway(sandbox)
    run = ExecutionRun(
        engine,
        gateway,
        ExecutionSettings(),
        "payout_2026-10",
        "2026-10",
        ExecutionReport("payout_2026-10", "2026-10"),
        utcnow,
        None,
    )
    assert item.status == "pending"
    assert (
        ledger.claim(engine, item, paying_account=gateway.paying_account(), identity=run.identity(item), now=utcnow())
        is None
    )
    report = execute_batch(engine, gateway, OCT)
    assert report.sent == 0 and [a.kind for a in report.anomalies] == ["posted_item_not_pending"]
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT COUNT(*) FROM transfer_attempt WHERE payout_item_id = :i"), {"i": alice}
            ).scalar_one()
            == 1
        )
    assert len(sandbox_transfers(stripe_client)) == 2


def _send_without_scan(engine, sandbox) -> ExecutionReport:
    """A rebuilt ledger that sends its keys without the group scan (as if a concurrent ledger had paid
    right after the scan): what Stripe's idempotency layer alone answers, and how it is recorded."""
    report = ExecutionReport("payout_2026-10", "2026-10")
    run = ExecutionRun(
        engine, make_gateway(sandbox), ExecutionSettings(), "payout_2026-10", "2026-10", report, utcnow, None
    )
    with engine.connect() as conn:
        items = ledger.work_items(conn, "payout_2026-10")
    for item in items:
        run.process(item)
    return report


def test_rebuilt_ledger_sending_the_same_keys_gets_replays_and_adopts(engine, other_ledger, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, FIVE)
    execute_batch(engine, make_gateway(sandbox), OCT)
    second = other_ledger("replay.sqlite3")
    _seed(second, accounts, FIVE)
    report = _send_without_scan(second, sandbox)
    assert report.sent == 5 and report.adopted == 5
    assert sandbox.admin("GET", "/_sandbox/stats")["replays"] == 5  # Idempotent-Replayed: true
    assert len(sandbox_transfers(stripe_client)) == 5
    assert {s for s, _ in item_states(second).values()} == {"posted"}
    assert_paid_exactly_once(second, stripe_client)


def test_rebuilt_ledger_with_a_changed_amount_is_refused_by_stripe_and_blocked(
    engine, other_ledger, sandbox, stripe_client
):
    accounts = seed_batch(engine, stripe_client, FIVE)
    execute_batch(engine, make_gateway(sandbox), OCT)
    second = other_ledger("refused.sqlite3")
    _seed(second, accounts, {**FIVE, "bob": 6_500})
    report = _send_without_scan(second, sandbox)
    assert report.adopted == 4 and list(report.blocked) and len(sandbox_transfers(stripe_client)) == 5
    status, reason = item_states(second)["bob"]
    assert status == "blocked" and reason.startswith("already_paid_outside_this_ledger: tr_")
    with second.connect() as conn:
        [(state, code)] = conn.execute(
            sa.text(
                "SELECT a.state, a.error_code FROM transfer_attempt a JOIN payout_item i USING (payout_item_id) "
                "WHERE i.affiliate_id = 'bob'"
            )
        ).all()
    assert (state, code) == ("failed", "idempotency_error")
    assert_paid_exactly_once(second, stripe_client)


def _legacy_open_attempt(engine, affiliate: str) -> tuple[int, str]:
    """An attempt claimed by the code before revision 0005 (random ledger id in the key), outcome unknown."""
    with engine.begin() as conn:
        item_id, amount, destination = conn.execute(
            sa.text("SELECT payout_item_id, amount_minor, stripe_account_id FROM payout_item WHERE affiliate_id = :a"),
            {"a": affiliate},
        ).one()
        key = f"sorae-abc123def456-item-{item_id}-attempt-1"
        conn.execute(sa.text("UPDATE payout_item SET status = 'processing' WHERE payout_item_id = :i"), {"i": item_id})
        conn.execute(
            sa.text(
                "INSERT INTO transfer_attempt (payout_item_id, attempt_number, idempotency_key, state, amount_minor, "
                "currency, destination, created_at, updated_at) VALUES (:i, 1, :k, 'processing', :a, 'usd', :d, "
                ":now, :now)"
            ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
            {"i": item_id, "k": key, "a": amount, "d": destination, "now": NOW},
        )
    return item_id, key


def test_resumed_attempts_of_the_previous_key_format_still_resolve(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000, "carol": 7_000})
    alice_id, alice_key = _legacy_open_attempt(engine, "alice")
    bob_id, bob_key = _legacy_open_attempt(engine, "bob")
    # The old code had sent alice's transfer (its metadata format) before it died; bob's never left.
    with engine.connect() as conn:
        [alice] = [i for i in ledger.work_items(conn, "payout_2026-10") if i.payout_item_id == alice_id]
    run = ExecutionRun(
        engine,
        make_gateway(sandbox),
        ExecutionSettings(),
        "payout_2026-10",
        "2026-10",
        ExecutionReport("payout_2026-10", "2026-10"),
        utcnow,
        None,
    )
    with engine.connect() as conn:
        attempt = ledger.open_attempt(conn, alice_id)
    sent = run.gateway.create_transfer(run._request(alice, attempt), alice_key).transfer
    assert sent.metadata["sorae_ledger_id"] == "abc123def456" and "program_id" not in sent.metadata
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": DAY_AND_AN_HOUR})
    report = execute_batch(engine, make_gateway(sandbox), OCT, clock=later(25))
    assert report.resolved_by_lookup == 1 and report.sent == 2  # bob's old key re-sent, carol new
    with engine.connect() as conn:
        keys = dict(
            conn.execute(
                sa.text(
                    "SELECT i.affiliate_id, a.idempotency_key FROM transfer_attempt a "
                    "JOIN payout_item i USING (payout_item_id) WHERE a.state = 'posted'"
                )
            ).all()
        )
    assert keys["alice"] == alice_key and keys["bob"] == bob_key and keys["carol"].startswith("sorae:v2:acct_")
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 3


def test_anomalies_are_recorded_once_and_are_append_only(engine, sandbox, stripe_client):
    from sorae_payouts.execution.anomalies import Anomaly, record_anomalies

    seed_batch(engine, stripe_client, {"alice": 5_000})
    anomaly = Anomaly("second_transfer_for_item", "tr_x also pays this item", 1, None, "tr_x")
    record_anomalies(engine, "payout_2026-10", [anomaly, anomaly], now=NOW)
    record_anomalies(engine, "payout_2026-10", [anomaly, Anomaly("unmatched_transfer_in_group", "d")], now=NOW)
    with engine.connect() as conn:
        assert [a["kind"] for a in list_anomalies(conn, "payout_2026-10")] == [
            "second_transfer_for_item",
            "unmatched_transfer_in_group",
        ]
    for statement in ("UPDATE execution_anomaly SET detail = 'edited'", "DELETE FROM execution_anomaly"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))


def test_refused_key_with_no_transfer_behind_it_blocks_the_item(engine, other_ledger, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, {"alice": 5_000})
    available = sandbox.admin("GET", "/_sandbox/balance")["available"]
    usd = next(b["amount"] for b in available if b["currency"] == "usd")
    sandbox.admin("POST", "/_sandbox/balance", {"currency": "usd", "amount": -usd})  # Stripe stores the refusal
    first = _send_without_scan(engine, sandbox)
    assert item_states(engine)["alice"][0] == "pending" and first.sent == 1  # balance_insufficient, retryable
    second = other_ledger("refused_nothing.sqlite3")
    _seed(second, accounts, {"alice": 5_500})
    report = _send_without_scan(second, sandbox)
    status, reason = item_states(second)["alice"]
    assert status == "blocked" and reason.startswith("idempotency_key_reused: Stripe refused key sorae:v2:")
    assert [a.kind for a in report.anomalies] == ["idempotency_key_reused"]
    assert sandbox_transfers(stripe_client) == []
    assert_paid_exactly_once(second, stripe_client)


def test_blocked_item_and_its_anomaly_are_shown_by_batch_show_and_reconcile(
    engine, ledger_url, sandbox, stripe_client, monkeypatch
):
    import json

    import typer
    from typer.testing import CliRunner

    from sorae_payouts.cli import batch_cmd, operations_cmd

    accounts = seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    by_hand = stripe_client.v1.transfers.create(
        params={  # someone paid alice by hand, with other amount
            "amount": 4_000,
            "currency": "usd",
            "destination": accounts["alice"],
            "transfer_group": "payout_2026-10",
            "metadata": {"period": "2026-10", "affiliate_id": "alice"},
        }
    )
    report = execute_batch(engine, make_gateway(sandbox), OCT)
    assert report.sent == 1 and list(report.blocked.values()) == [
        f"already_paid_outside_this_ledger: {by_hand.id}, amount 40.00 usd != 50.00 usd"
    ]
    for name, value in {
        "SORAE_DATABASE_URL": ledger_url,
        "STRIPE_API_KEY": "sk_test_sorae_tests",
        "STRIPE_API_BASE": sandbox.url,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    shown = runner.invoke(batch_cmd.app, ["show", "2026-10"])
    assert shown.exit_code == 0 and "already_paid_outside_this_ledger" in shown.output and "blocked" in shown.output
    app = typer.Typer()
    operations_cmd.register(app)
    reconciled = runner.invoke(app, ["reconcile", "2026-10", "--json"])
    body = json.loads(reconciled.output)
    assert reconciled.exit_code == 1 and [a["kind"] for a in body["anomalies"]] == ["already_paid_outside_this_ledger"]
    assert [d["drift"] for d in body["drift"]] == ["unknown_to_ledger"]
    assert_paid_exactly_once(engine, stripe_client)


def test_executed_transfers_metadata_shows_blocked_items_and_anomalies(engine, ledger_url, sandbox, stripe_client):
    import dagster as dg

    from sorae_payouts.definitions import defs
    from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource

    accounts = seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    stripe_client.v1.transfers.create(
        params={
            "amount": 6_100,
            "currency": "usd",
            "destination": accounts["bob"],
            "transfer_group": "payout_2026-10",
            "metadata": {"program_id": "default", "period": "2026-10", "affiliate_id": "bob", "currency": "usd"},
        }
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("program", ["default"])
        result = defs.resolve_job_def("payout_execution_job").execute_in_process(
            partition_key="2026-10-01|default",
            raise_on_error=False,
            instance=instance,
            resources={
                "ledger": LedgerResource(database_url=ledger_url),
                "payout_settings": PayoutSettings(),
                "stripe": StripeResource(
                    api_key="sk_test_sorae_tests", api_base=sandbox.url, rate_limit_per_second=500
                ),
            },
        )
    assert result.success
    meta = result.asset_materializations_for_node("execute_transfers")[0].metadata
    assert (meta["posted"].value, meta["blocked"].value, meta["group_list_requests"].value) == (1, 1, 1)
    [row] = [r.data for r in meta["anomalies"].value.records]
    assert row["kind"] == "already_paid_outside_this_ledger" and "61.00 usd != 60.00 usd" in row["detail"]
    assert "1 items blocked" in meta["summary"].value
    assert_paid_exactly_once(engine, stripe_client)
