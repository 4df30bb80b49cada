"""Alembic environment: the ledger URL comes from the caller (`sorae-payouts db upgrade`) or
SORAE_DATABASE_URL, never from a file in the repository."""

from __future__ import annotations

from alembic import context

from sorae_payouts.ledger.database import create_ledger_engine, database_url
from sorae_payouts.ledger.schema import metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_ledger_engine(config.get_main_option("sqlalchemy.url") or database_url())
    with engine.begin() as conn:
        _migrate(conn)
    engine.dispose()


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
