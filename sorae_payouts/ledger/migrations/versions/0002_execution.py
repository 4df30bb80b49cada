"""Execution support: a ledger identity for idempotency keys, item hold reasons, execution timestamps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

`ledger_meta.ledger_id` is a random id minted once per ledger database. Idempotency keys embed it, so
two ledgers (a reset test database, a staging copy) that reuse payout item ids against the same Stripe
account never collide on a key: a collision would make Stripe replay another ledger's transfer.
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_meta",
        sa.Column("singleton", sa.Integer, primary_key=True),
        sa.Column("ledger_id", sa.String(32), nullable=False),
        sa.CheckConstraint("singleton = 1", name="ck_ledger_meta_singleton"),
    )
    op.execute(
        sa.text("INSERT INTO ledger_meta (singleton, ledger_id) VALUES (1, :id)").bindparams(id=uuid.uuid4().hex[:12])
    )
    # At most one posted attempt per item: the database itself refuses to record a second payment.
    op.create_index(
        "uq_transfer_attempt_one_posted",
        "transfer_attempt",
        ["payout_item_id"],
        unique=True,
        sqlite_where=sa.text("state = 'posted'"),
        postgresql_where=sa.text("state = 'posted'"),
    )
    with op.batch_alter_table("payout_item") as batch:
        batch.add_column(sa.Column("hold_reason", sa.Text))
        batch.add_column(sa.Column("status_updated_at", sa.DateTime(timezone=True)))
    for event in ("UPDATE", "DELETE"):
        name = f"guard_ledger_meta_{event.lower()}"
        if op.get_bind().dialect.name == "sqlite":
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON ledger_meta FOR EACH ROW "
                "BEGIN SELECT RAISE(ABORT, 'sorae ledger: the ledger id is immutable'); END"
            )
        else:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'sorae ledger: the ledger id is immutable' USING ERRCODE = 'P0001'; END $$"
            )
            op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON ledger_meta FOR EACH ROW EXECUTE FUNCTION {name}()")


def downgrade() -> None:
    for event in ("UPDATE", "DELETE"):
        name = f"guard_ledger_meta_{event.lower()}"
        op.execute(
            f"DROP TRIGGER IF EXISTS {name}" + ("" if op.get_bind().dialect.name == "sqlite" else " ON ledger_meta")
        )
    op.drop_index("uq_transfer_attempt_one_posted", "transfer_attempt")
    with op.batch_alter_table("payout_item") as batch:
        batch.drop_column("status_updated_at")
        batch.drop_column("hold_reason")
    op.drop_table("ledger_meta")
