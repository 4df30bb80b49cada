"""Least privilege on PostgreSQL: the application's role cannot lift or bypass the ledger's guards.

PostgreSQL only: SQLite has neither roles nor TRUNCATE (its guards are covered on both backends in
test_immutability.py and test_approvals.py)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import app
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.ledger.privileges import PrivilegeError, grant_app_role
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.stripe_gateway.shared_rate_limit import SharedRateLimiter
from sorae_payouts_tests.conftest import PG_ADMIN_URL, make_ledger_url
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    approve,
    build_manifest,
    finalize_period,
)


@pytest.fixture
def owner_url(request, tmp_path):
    return make_ledger_url("postgres", tmp_path, request)


@pytest.fixture
def app_role(owner_url, monkeypatch):
    """A fresh app role granted through `db upgrade --grant-app-role` (the owner URL from
    SORAE_MIGRATION_DATABASE_URL); dropped afterwards."""
    role = f"sorae_app_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SORAE_MIGRATION_DATABASE_URL", owner_url)
    monkeypatch.setenv("SORAE_DATABASE_URL", "sqlite:///must-not-be-used.sqlite3")
    result = CliRunner().invoke(app, ["db", "upgrade", "--grant-app-role", role])
    assert result.exit_code == 0, result.output
    yield role
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _as(url: str, role: str) -> sa.Engine:
    return create_ledger_engine(str(sa.engine.make_url(url).set(username=role, password=None)))


def _refused(engine: sa.Engine, statement: str, match: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=match), engine.begin() as conn:
        conn.exec_driver_sql(statement)


@pytest.fixture
def approved_ledger(owner_url):
    owner = create_ledger_engine(owner_url)
    add_affiliate(owner, "alice")
    add_commission(owner, "alice", 5_000)
    finalize_period(owner, OCT, now=NOW, holding_days=3)
    build_manifest(owner, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW)
    approve(owner, OCT, "ops")
    yield owner
    owner.dispose()


def test_app_role_has_dml_but_cannot_truncate_or_change_the_schema(owner_url, app_role, approved_ledger):
    engine = _as(owner_url, app_role)
    try:
        with engine.begin() as conn:  # the DML the application needs
            assert conn.exec_driver_sql("SELECT count(*) FROM payout_item").scalar_one() == 1
            conn.exec_driver_sql("UPDATE payout_item SET hold_reason = 'account not ready'")
            conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
        for table in ("batch_approval", "payout_item_status_event", "transfer_attempt", "operator_event"):
            _refused(engine, f"TRUNCATE {table}", "permission denied")
        _refused(engine, "DROP TRIGGER guard_payout_batch_approved ON payout_batch", "must be owner")
        _refused(engine, "ALTER TABLE payout_item DISABLE TRIGGER ALL", "must be owner")
        _refused(engine, "ALTER TABLE batch_approval DISABLE TRIGGER guard_batch_approval_update", "must be owner")
        _refused(engine, "ALTER TABLE payout_item ADD COLUMN note text", "must be owner")
        _refused(engine, "DROP TABLE batch_approval", "must be owner")
        _refused(engine, "CREATE TABLE scratch (x int)", "permission denied")
        _refused(engine, "UPDATE alembic_version SET version_num = '0001'", "permission denied")
    finally:
        engine.dispose()


def test_ledger_tables_refuse_truncate_even_for_the_owner(approved_ledger):
    # Every ledger table, including those of revisions after 0006 (guarded by 0010). Operational state
    # (the Stripe rate schedule, 0011) is not a money record: no guard (the app role has no TRUNCATE).
    from sorae_payouts.ledger.schema import OPERATIONAL_TABLES, metadata

    assert set(metadata.tables) > OPERATIONAL_TABLES
    for table in sorted(set(metadata.tables) - OPERATIONAL_TABLES):
        _refused(approved_ledger, f"TRUNCATE {table} CASCADE", "cannot be truncated")


def test_app_role_keeps_the_stripe_rate_schedule_but_cannot_delete_it(owner_url, app_role, approved_ledger):
    engine = _as(owner_url, app_role)
    try:
        limiter = SharedRateLimiter(engine, "acct_app_role", 20)
        assert limiter.reserve() == 0.0  # INSERT ... RETURNING
        assert limiter.reserve() > 0.0  # ON CONFLICT DO UPDATE
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM stripe_rate_schedule").scalar_one() == 1
        _refused(engine, "DELETE FROM stripe_rate_schedule", "permission denied")
        _refused(engine, "TRUNCATE stripe_rate_schedule", "permission denied")
    finally:
        engine.dispose()


def test_grants_are_reapplied_and_cover_tables_of_later_migrations(owner_url, app_role, approved_ledger):
    with approved_ledger.begin() as conn:  # what a later migration does, as the owner
        conn.exec_driver_sql("CREATE TABLE later_table (id bigserial PRIMARY KEY, note text)")
        conn.exec_driver_sql(f'GRANT TRUNCATE ON payout_item TO "{app_role}"')  # drift, undone by re-granting
    assert CliRunner().invoke(app, ["db", "upgrade", "--grant-app-role", app_role]).exit_code == 0
    engine = _as(owner_url, app_role)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO later_table (note) VALUES ('covered')")
        _refused(engine, "TRUNCATE later_table", "permission denied")
        _refused(engine, "TRUNCATE payout_item CASCADE", "permission denied")
    finally:
        engine.dispose()


def test_the_owner_role_cannot_be_the_app_role(approved_ledger):
    with pytest.raises(PrivilegeError, match="owner"):
        grant_app_role(approved_ledger, approved_ledger.url.username)


def test_app_role_cannot_reset_a_posted_item(owner_url, app_role, approved_ledger):
    """The refusal comes from the item state machine trigger (helper i8a's revision): posted is terminal."""
    with approved_ledger.begin() as conn:
        conn.exec_driver_sql("UPDATE payout_item SET status = 'processing'")
        conn.exec_driver_sql("UPDATE payout_item SET status = 'posted'")
    engine = _as(owner_url, app_role)
    try:
        _refused(engine, "UPDATE payout_item SET status = 'pending' WHERE status = 'posted'", "sorae ledger")
    finally:
        engine.dispose()


def test_the_app_role_cannot_bootstrap_operators(owner_url, app_role, approved_ledger):
    """Issue 16, defect 5: the bootstrap (operators registered without a second operator's confirmation)
    is the database owner's. An operator connected as the application's role (Dagster, their CLI) cannot
    use it to register a second identity of their own, nor attach a key to the owner's bootstrap."""
    from sorae_payouts.core.signing import SigningKey
    from sorae_payouts.registry.operator_bootstrap import NewOperator, bootstrap_operators
    from sorae_payouts.registry.operators import OperatorError

    second = SigningKey.generate()
    engine = _as(owner_url, app_role)
    try:
        with pytest.raises(OperatorError, match="only by the database owner"):
            bootstrap_operators(engine, "default", [NewOperator("ops2", second.public_key)], recorded_by="ops", now=NOW)
        _refused(
            engine,
            "INSERT INTO operator_key (program_id, operator_id, key_id, public_key, registered_at, bootstrap_pk) "
            f"SELECT 'default', 'ops2', '{second.key_id}', '{second.public_key}', now(), MAX(bootstrap_pk) "
            "FROM operator_bootstrap",
            "registered by a bootstrap of the database owner",
        )
    finally:
        engine.dispose()
    # The owner (the administrator, SORAE_MIGRATION_DATABASE_URL) may.
    assert bootstrap_operators(
        approved_ledger, "default", [NewOperator("ops2", second.public_key)], recorded_by="dba", now=NOW
    )
