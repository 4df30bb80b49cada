"""Connecting to the ledger and bringing its schema up to date.

The URL comes from SORAE_DATABASE_URL; without it the ledger is a SQLite file in the project-local,
git-ignored `data/` folder (or SORAE_DATA_DIR), created on demand. On PostgreSQL, migrations run as
the owner role (SORAE_MIGRATION_DATABASE_URL) and the application connects as a role that only has the
DML it needs (see `privileges.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def data_dir() -> Path:
    """Project-local folder for the embedded ledger, demo files and the demo Dagster home."""
    path = Path(os.environ.get("SORAE_DATA_DIR") or Path.cwd() / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url(url: str | None = None) -> str:
    """The ledger URL: explicit argument, else SORAE_DATABASE_URL, else the embedded SQLite file."""
    return url or os.environ.get("SORAE_DATABASE_URL") or f"sqlite:///{data_dir() / 'ledger.sqlite3'}"


def migration_url(url: str | None = None) -> str:
    """The URL migrations run with: the owner role's (SORAE_MIGRATION_DATABASE_URL), else the ledger URL."""
    return url or os.environ.get("SORAE_MIGRATION_DATABASE_URL") or database_url()


def redact(url: str) -> str:
    """The URL without its password, for logs and metadata."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def create_ledger_engine(url: str | None = None) -> sa.Engine:
    """An engine with the settings the ledger relies on (SQLite: FKs on, WAL, busy timeout)."""
    resolved = database_url(url)
    if resolved.startswith("postgresql://"):
        resolved = "postgresql+psycopg://" + resolved.removeprefix("postgresql://")
    if resolved.startswith("sqlite"):
        engine = sa.create_engine(resolved, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # A migration that rebuilds tables switches foreign keys off on its connection (see
        # migrations/sqlite_rebuild.py): every checkout switches them on again (microseconds).
        sa.event.listen(engine, "checkout", _sqlite_foreign_keys_on)
        # pysqlite's implicit transactions break SAVEPOINT and BEGIN IMMEDIATE; take control of them.
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    # JIT compilation costs ~0.3 s per big month-end statement and wins nothing on these plans; the
    # pool is sized for the execution worker threads (each holds a connection only per transaction).
    return sa.create_engine(
        resolved, pool_pre_ping=True, pool_size=10, max_overflow=30, connect_args={"options": "-c jit=off"}
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # autocommit at the driver; SQLAlchemy issues BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA busy_timeout = 60000")
    cursor.close()


def _sqlite_foreign_keys_on(dbapi_connection, _record, _proxy) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Create or migrate the ledger schema (Alembic), on the given engine."""
    from alembic import command  # imported here: alembic costs start-up time to commands that never migrate
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision of the migrations (what `upgrade` brings a ledger to)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    heads = ScriptDirectory.from_config(config).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations must have one head, not {heads}")
    return heads[0]
