"""Shared fixtures: every ledger test runs on SQLite AND on PostgreSQL.

PostgreSQL: 127.0.0.1:5432, user postgres (override with SORAE_TEST_PG_URL). One migrated template
database per test session, then a fresh uniquely named copy per test, dropped afterwards. Without a
reachable server the Postgres variants skip with a reason that says how to enable them; under CI
(CI=true) they fail instead, because a green CI that skipped Postgres proves nothing.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from sorae_payouts.ledger.database import create_ledger_engine, upgrade

# Rich wraps console output at the terminal width; CLI assertions read whole lines.
os.environ["COLUMNS"] = "250"

PG_ADMIN_URL = os.environ.get("SORAE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_url(dbname: str) -> str:
    return str(sa.engine.make_url(PG_ADMIN_URL).set(database=dbname))


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def pg_template():
    """A migrated template database, or a skip (a failure under CI) when Postgres is unreachable."""
    try:
        _pg_admin("SELECT 1")
    except psycopg.OperationalError as exc:
        message = (
            f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__}); start it or "
            "set SORAE_TEST_PG_URL to a server where user can CREATE DATABASE to run these tests"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"sorae_tmpl_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    engine = create_ledger_engine(_pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_ledger_url(backend: str, tmp_path, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    template = request.getfixturevalue("pg_template")
    name = f"sorae_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    request.addfinalizer(lambda: _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return _pg_url(name)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path) -> str:
    """URL of an empty, fully migrated ledger on each backend."""
    url = make_ledger_url(request.param, tmp_path, request)
    if request.param == "sqlite":
        engine = create_ledger_engine(url)
        upgrade(engine)
        engine.dispose()
    return url


@pytest.fixture
def engine(ledger_url):
    engine = create_ledger_engine(ledger_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _rejects_files_hold_no_formula(request):
    """After every test that wrote files: no rejects file of the run holds a cell a spreadsheet would
    evaluate (issue 9: the import neutralizes formulas in everything it writes)."""
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if tmp is None:
        return
    from sorae_payouts_tests.csv_cells import evaluable_cells

    for path in tmp.rglob("*.rejects.csv"):
        assert evaluable_cells(path, numeric=("row",)) == [], f"{path} holds cells a spreadsheet would evaluate"
