"""The payout ledger: a SQL database (SQLite embedded, PostgreSQL in production) through SQLAlchemy.

Tables live in `schema`, migrations in `migrations/` (Alembic), connection set-up in `database`.
"""
