"""Stripe identity: what each idempotency key was derived from, adopted transfers, execution anomalies.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

New attempts derive their idempotency key from business identity (paying Stripe account, program,
period, affiliate, currency, attempt number; see `sorae_payouts.execution.identity`), not from the
random `ledger_meta.ledger_id`; attempts already stored keep their keys. `transfer_attempt.key_basis`
records what a key was derived from and `transfer_attempt.note` why an attempt exists when this ledger
did not send it (a transfer adopted from Stripe). `execution_anomaly` is the append-only list of what
operators must look at: adopted or blocked items, a re-sent key Stripe executed anew, a transfer that
does not match its attempt, a second transfer for a paid item.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no default) on both databases: SQLite keeps the table and its triggers.
    op.add_column("transfer_attempt", sa.Column("key_basis", sa.Text))
    op.add_column("transfer_attempt", sa.Column("note", sa.Text))
    op.create_table(
        "execution_anomaly",
        sa.Column("anomaly_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False, index=True),
        sa.Column("payout_item_id", sa.BigInteger),
        sa.Column("attempt_pk", sa.BigInteger),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("stripe_transfer_id", sa.String(64)),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for event in ("UPDATE", "DELETE"):
        name = f"guard_execution_anomaly_{event.lower()}"
        message = "sorae ledger: execution_anomaly rows are append-only"
        if sqlite:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON execution_anomaly FOR EACH ROW "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        else:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"RAISE EXCEPTION '{message}' USING ERRCODE = 'P0001'; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON execution_anomaly FOR EACH ROW EXECUTE FUNCTION {name}()"
            )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for event in ("UPDATE", "DELETE"):
        name = f"guard_execution_anomaly_{event.lower()}"
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if sqlite else " ON execution_anomaly"))
        if not sqlite:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("execution_anomaly")
    # Plain DROP COLUMN (SQLite >= 3.35): a batch copy of the table would drop its triggers and break
    # the view of revision 0004 that reads it.
    op.execute("ALTER TABLE transfer_attempt DROP COLUMN note")
    op.execute("ALTER TABLE transfer_attempt DROP COLUMN key_basis")
