"""Upgrade in place (issue 11, point 9): a ledger built by the previous release (revision 0010, the demo
month 2026-10 closed and paid by that release's own `sorae-payouts demo`) becomes the program
`default` with nothing lost, on both databases, and then pays a new month.

The fixtures in fixtures/release_0010/ were written by commit 34d9d26 (the release before programs):
`sorae-payouts demo --affiliates 30 --commissions 300` with SORAE_DATA_DIR=<tmp> (SQLite file) and
with SORAE_DATABASE_URL=<a fresh PostgreSQL database> (then `pg_dump --no-owner --no-privileges
--inserts`, comments and psql meta-commands stripped).
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sorae_payouts.ledger import schema
from sorae_payouts.ledger.database import create_ledger_engine, current_revision, head_revision, upgrade
from sorae_payouts_tests.conftest import _pg_admin, _pg_url

FIXTURES = Path(__file__).parent / "fixtures" / "release_0010"
OCT = date(2026, 10, 1)
NOV = date(2026, 11, 1)
TABLES = (
    "affiliate",
    "commission",
    "order_event",
    "commission_period",
    "period_snapshot",
    "commission_adjustment",
    "payout_batch",
    "payout_item",
    "transfer_attempt",
    "batch_approval",
    "operator",
    "operator_event",
    "payout_item_status_event",
    "execution_anomaly",
    "account_status_event",
    "transfer_status_event",
)
PROGRAM_TABLES = (
    "affiliate",
    "commission",
    "order_event",
    "commission_period",
    "period_snapshot",
    "commission_adjustment",
    "payout_batch",
    "payout_item",
    "transfer_attempt",
)
MONEY = {
    "commission": "amount_minor",
    "payout_item": "amount_minor",
    "transfer_attempt": "amount_minor",
    "commission_adjustment": "amount_minor",
    "period_snapshot": "gross_minor",
}


@pytest.fixture(params=["sqlite", "postgres"])
def release_ledger(request, tmp_path):
    """A URL of the previous release's ledger, still at revision 0010."""
    if request.param == "sqlite":
        target = tmp_path / "ledger.sqlite3"
        shutil.copy(FIXTURES / "ledger.sqlite3", target)
        yield f"sqlite:///{target}"
        return
    request.getfixturevalue("pg_template")  # skips (fails under CI) when PostgreSQL is unreachable
    name = f"sorae_release_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    with psycopg.connect(_pg_url(name), autocommit=True) as conn:
        conn.execute((FIXTURES / "ledger.sql").read_text())
    yield _pg_url(name)
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _census(engine) -> dict:
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        sums = {
            t: int(conn.execute(sa.text(f"SELECT COALESCE(SUM({c}), 0) FROM {t}")).scalar_one())
            for t, c in MONEY.items()
        }
        history = conn.execute(
            sa.text(
                "SELECT payout_item_id, affiliate_id, amount_minor, item_status, stripe_transfer_id "
                "FROM affiliate_payout_history ORDER BY payout_item_id"
            )
        ).all()
    return {"counts": counts, "sums": sums, "history": [tuple(r) for r in history]}


def test_previous_release_ledger_becomes_the_default_program(release_ledger):
    engine = create_ledger_engine(release_ledger)
    try:
        assert current_revision(engine) == "0010"
        before = _census(engine)
        assert before["counts"]["transfer_attempt"] > 0 and before["counts"]["payout_item"] > 0
        upgrade(engine)
        assert current_revision(engine) == head_revision()  # 0011 (rate schedule), 0012 (programs), 0013, ...
        after = _census(engine)
        assert after == before  # nothing lost, nothing changed: rows, money, the portal's history
        from sorae_payouts.month_end.approvals import verify_batch_approvals
        from sorae_payouts.month_end.batches import load_batch

        with engine.connect() as conn:  # approved before signatures existed: its unsigned approval still counts
            assert verify_batch_approvals(conn, load_batch(conn, OCT)) == ["demo-approver-1@sorae.example"]
        with engine.connect() as conn:
            for table in PROGRAM_TABLES:
                programs = conn.execute(sa.text(f"SELECT DISTINCT program_id FROM {table}")).scalars().all()
                assert programs == ["default"], table
            assert conn.execute(sa.text("SELECT program_id, paying_account_ref, status FROM program")).all() == [
                ("default", None, "active")
            ]
            assert conn.execute(
                sa.text("SELECT DISTINCT program_id FROM affiliate_payout_history")
            ).scalars().all() == ["default"]
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        _guards_still_hold(engine)
    finally:
        engine.dispose()


def _guards_still_hold(engine) -> None:
    """The rebuilt tables kept their immutability triggers (SQLite re-creates them after the rebuild)."""
    refusals = [
        "UPDATE commission SET amount_minor = amount_minor + 1 WHERE period = '2026-10-01'",
        "DELETE FROM commission_period",
        "UPDATE payout_item SET amount_minor = amount_minor + 1, period_amount_minor = period_amount_minor + 1",
        "UPDATE transfer_attempt SET error_code = 'x' WHERE state = 'posted'",
        "UPDATE payout_batch SET status = 'draft'",
        "UPDATE affiliate SET program_id = 'default'",  # no-op on the value, but the guard is on DISTINCT
        "DELETE FROM affiliate",
    ]
    for statement in refusals:
        with engine.begin() as conn:
            try:
                conn.execute(sa.text(statement))
            except sa.exc.DBAPIError as exc:
                assert "sorae ledger" in str(exc) or "FOREIGN KEY" in str(exc).upper(), statement
                continue
        if statement.startswith("UPDATE affiliate"):
            continue  # unchanged program id: allowed, nothing changed
        pytest.fail(f"not refused after the upgrade: {statement}")


def test_upgraded_ledger_pays_a_new_month(release_ledger, tmp_path):
    """After the upgrade, the default program closes and pays November with today's code: October's
    carried-forward balances flow in, and a second program can reuse the same affiliate ids."""
    import stripe

    from sorae_payouts.execution.pay_batch import execute_batch
    from sorae_payouts.month_end.approvals import approve_batch
    from sorae_payouts.month_end.batches import load_batch
    from sorae_payouts.month_end.manifest import PayoutPolicy
    from sorae_payouts.registry.programs import add_program
    from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway
    from sorae_payouts_tests.factory import build_manifest, finalize_period, operator_key, register_operators
    from sorae_sandbox import SandboxServer

    engine = create_ledger_engine(release_ledger)
    now = datetime(2026, 12, 20, tzinfo=UTC)
    api_key = "sk_test_sorae_upgrade"
    server = SandboxServer(
        port=0, state_path=tmp_path / "sandbox.sqlite3", balances={"usd": 10**12, "eur": 10**12, "jpy": 10**12}
    ).start()
    try:
        upgrade(engine)
        client = stripe.StripeClient(api_key, base_addresses={"api": server.url}, max_network_retries=0)
        with engine.begin() as conn:
            affiliates = conn.execute(
                sa.text(
                    "SELECT affiliate_id, currency FROM affiliate "
                    "WHERE stripe_account_id IS NOT NULL ORDER BY affiliate_id"
                )
            ).all()
            # Onboarding moved them to this sandbox: the import upserts their new connected accounts.
            for affiliate_id, _ in affiliates:
                account = client.v1.accounts.create(
                    params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
                ).id
                conn.execute(
                    sa.text("UPDATE affiliate SET stripe_account_id = :a WHERE affiliate_id = :i"),
                    {"a": account, "i": affiliate_id},
                )
            for n, (affiliate_id, currency) in enumerate(affiliates):
                conn.execute(
                    schema.commission.insert().values(
                        program_id="default",
                        commission_id=f"nov_{n}",
                        affiliate_id=affiliate_id,
                        order_id=f"nov_o{n}",
                        amount_minor=100_000,
                        currency=currency,
                        earned_at=datetime(2026, 11, 10, tzinfo=UTC),
                        period=NOV,
                        imported_at=now,
                    )
                )
        finalize_period(engine, NOV, now=now, holding_days=14)
        report = build_manifest(engine, NOV, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=now)
        assert report.batch_id == "payout_2026-11"
        with engine.connect() as conn:
            carried_in = conn.execute(
                sa.text("SELECT COALESCE(SUM(carried_in_minor), 0) FROM payout_item WHERE batch_id = 'payout_2026-11'")
            ).scalar_one()
            reviewed = load_batch(conn, NOV).manifest_hash
        assert carried_in > 0  # October's carried-forward balances, written by the previous release
        # The release's operators have no key: the administrator bootstraps the approvers' keys.
        register_operators(engine, "upgrade-approver-1", "upgrade-approver-2")
        for operator in ("upgrade-approver-1", "upgrade-approver-2"):
            if approve_batch(engine, NOV, key=operator_key(operator), now=now, expected_hash=reviewed).complete:
                break
        gateway = StripeGateway(
            GatewayConfig(
                api_key=api_key,
                api_base=server.url,
                max_network_retries=0,
                timeout_seconds=10,
                rate_limit_per_second=1_000,
            )
        )
        execute_batch(engine, gateway, NOV)
        with engine.connect() as conn:
            posted = conn.execute(
                sa.text("SELECT count(*) FROM payout_item WHERE batch_id = 'payout_2026-11' AND status = 'posted'")
            ).scalar_one()
            keys = (
                conn.execute(
                    sa.text(
                        "SELECT a.idempotency_key FROM transfer_attempt a JOIN payout_item i USING (payout_item_id) "
                        "WHERE i.batch_id = 'payout_2026-11'"
                    )
                )
                .scalars()
                .all()
            )
        assert posted == len(affiliates)
        assert all(":default:2026-11:" in key for key in keys)
        # A second merchant arrives: the same affiliate ids are its own records.
        add_program(engine, "acme", name="Acme", added_by="tests", now=now)
        with engine.begin() as conn:
            conn.execute(
                schema.affiliate.insert().values(
                    program_id="acme",
                    affiliate_id=affiliates[0][0],
                    name="Someone else",
                    email="x@acme.example",
                    stripe_account_id=None,
                    currency="usd",
                    imported_at=now,
                )
            )
            count = conn.execute(
                sa.text("SELECT count(*) FROM affiliate WHERE affiliate_id = :i"), {"i": affiliates[0][0]}
            ).scalar_one()
        assert count == 2
    finally:
        server.stop()
        engine.dispose()
