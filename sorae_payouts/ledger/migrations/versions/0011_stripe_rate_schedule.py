"""The Stripe rate schedule: one row per paying Stripe account, shared by every process.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27

`stripe_rate_schedule` holds, for each paying account (`acct_...`), the next free request slot on the
database's clock (microseconds since the epoch). `stripe_gateway.shared_rate_limit.SharedRateLimiter`
reserves one slot per Stripe request in a single upsert, so every process and thread that pays from the
same account stays under that account's limit together; accounts are separate rows and never wait on
each other.

Operational state, not a money record: rows are overwritten on every request and may be deleted (the
next request starts a fresh schedule). So no immutability triggers and no TRUNCATE guard, unlike the
ledger tables of 0006/0010; the application role still gets only SELECT, INSERT, UPDATE on it
(`ledger/privileges.py`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_rate_schedule",
        sa.Column("paying_account", sa.String(64), primary_key=True),
        sa.Column("last_slot_us", sa.BigInteger, nullable=False),
        sa.Column("next_slot_us", sa.BigInteger, nullable=False),
        sa.Column("reserved_at_us", sa.BigInteger, nullable=False),
        sa.Column("interval_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("interval_us > 0", name="ck_stripe_rate_schedule_interval"),
    )


def downgrade() -> None:
    op.drop_table("stripe_rate_schedule")
