"""BEFORE TRUNCATE guards for the ledger tables created after revision 0006 (PostgreSQL).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

Revision 0006 guards every table that existed then against TRUNCATE (which fires no row triggers, so it
would bypass the append-only DELETE guards). The tables of revisions 0008 and 0009 get the same guard,
through the same `guard_truncate()` function. SQLite has no TRUNCATE: nothing to do there.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LATER_TABLES = (
    "payout_item_retry",
    "payout_item_carry",
    "reversal_decision",
    "owed_again_carry",
    "transfer_reversal_request",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in LATER_TABLES:
        op.execute(
            f"CREATE TRIGGER guard_{table}_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION guard_truncate()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in LATER_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS guard_{table}_truncate ON {table}")
