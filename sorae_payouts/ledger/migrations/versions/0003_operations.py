"""Operations: approvals, and append-only status history (items, transfers, connected accounts).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

History is appended, never overwritten: an item's status changes are copied by a trigger into
`payout_item_status_event`; refreshes append `transfer_status_event` (reversals seen in Stripe) and
`account_status_event` (connected account readiness). All three, and `batch_approval`, refuse UPDATE
and DELETE in the database.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
APPEND_ONLY = ("batch_approval", "payout_item_status_event", "transfer_status_event", "account_status_event")


def upgrade() -> None:
    op.create_table(
        "batch_approval",
        sa.Column("approval_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False),
        sa.Column("approved_by", sa.Text, nullable=False),
        sa.Column("approved_at", TS, nullable=False),
        sa.Column("manifest_hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("batch_id", "manifest_hash", "approved_by", name="uq_batch_approval_person"),
    )
    op.create_table(
        "payout_item_status_event",
        sa.Column("event_pk", PK, primary_key=True, autoincrement=True),
        # No foreign key: a draft's items are deleted when it is rebuilt, their history is kept.
        sa.Column("payout_item_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("old_status", sa.String(24)),
        sa.Column("new_status", sa.String(24), nullable=False),
        sa.Column("hold_reason", sa.Text),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_table(
        "transfer_status_event",
        sa.Column("event_pk", PK, primary_key=True, autoincrement=True),
        sa.Column(
            "attempt_pk", sa.BigInteger, sa.ForeignKey("transfer_attempt.attempt_pk"), nullable=False, index=True
        ),
        sa.Column("stripe_transfer_id", sa.String(64), nullable=False),
        sa.Column("reversed", sa.Boolean, nullable=False),
        sa.Column("amount_reversed_minor", sa.BigInteger, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_table(
        "account_status_event",
        sa.Column("event_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("stripe_account_id", sa.String(64), nullable=False, index=True),
        sa.Column("exists_in_stripe", sa.Boolean, nullable=False),
        sa.Column("transfers_capability", sa.String(16)),
        sa.Column("payouts_enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("recorded_at", TS, nullable=False),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            name = f"guard_{table}_{event.lower()}"
            message = f"sorae ledger: {table} rows are append-only"
            if sqlite:
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
            else:
                op.execute(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"RAISE EXCEPTION '{message}' USING ERRCODE = 'P0001'; END $$"
                )
                op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
    # Every status change of an item is recorded by the database itself, whatever code makes it.
    now = "CURRENT_TIMESTAMP" if not sqlite else "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
    insert = (
        "INSERT INTO payout_item_status_event (payout_item_id, old_status, new_status, hold_reason, recorded_at) "
        f"VALUES (NEW.payout_item_id, {{old}}, NEW.status, NEW.hold_reason, {now})"
    )
    # Only changes: an item's first status is on the item itself (and manifests insert 50k items at once).
    if sqlite:
        op.execute(
            "CREATE TRIGGER history_payout_item_update AFTER UPDATE ON payout_item FOR EACH ROW "
            "WHEN NEW.status IS NOT OLD.status OR NEW.hold_reason IS NOT OLD.hold_reason "
            f"BEGIN {insert.format(old='OLD.status')}; END"
        )
    else:
        op.execute(
            "CREATE FUNCTION history_payout_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            + insert.format(old="OLD.status")
            + "; RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER history_payout_item AFTER UPDATE ON payout_item FOR EACH ROW "
            "WHEN (NEW.status IS DISTINCT FROM OLD.status OR NEW.hold_reason IS DISTINCT FROM OLD.hold_reason) "
            "EXECUTE FUNCTION history_payout_item()"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS history_payout_item_update")
    else:
        op.execute("DROP TRIGGER IF EXISTS history_payout_item ON payout_item")
        op.execute("DROP FUNCTION IF EXISTS history_payout_item()")
    for table in reversed(APPEND_ONLY):
        op.drop_table(table)
