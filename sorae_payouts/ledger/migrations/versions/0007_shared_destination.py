"""One connected account, one affiliate: `affiliate.allow_shared_destination`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

By default an affiliate whose Stripe connected account is also another affiliate's is held at
execution pre-flight (`shared_destination`): two affiliates paid into one account is most often a
copy-paste error or a fraud attempt. An affiliate explicitly marked `allow_shared_destination`
(optional column of the affiliates file; e.g. one agency receiving for several sub-affiliates) is
paid anyway. Existing affiliates default to false, which holds shared destinations from now on.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN with a constant default: no table rebuild on SQLite, no rewrite on PostgreSQL,
    # and the affiliate triggers of 0001 keep working untouched.
    op.add_column(
        "affiliate", sa.Column("allow_shared_destination", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    # Native DROP COLUMN (SQLite >= 3.35): a batch table rebuild would break the triggers that name
    # `affiliate` (SQLite re-checks them on the rename).
    op.execute("ALTER TABLE affiliate DROP COLUMN allow_shared_destination")
