"""Money once owed elsewhere is paid only after Stripe is consulted (issue 16, defect 1).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

A September item held for an inactive account was paid by `refresh`; a backup taken before that was
restored (or the ledger re-created from the same files), so the ledger still saw September unpaid and
October carried its 300.00 again: 680.00 paid for 380.00 owed. Stripe knew; nobody asked it.

- `payout_item_stripe_check` (append-only): before a month end closes an unpaid item of an earlier batch
  as carried, Stripe is asked whether that money was paid (its month's transfer group, and later groups'
  transfers that name it as a source); the answer is recorded with the item's latest attempt at the time.
- A `payout_item_carry` row (the record that closes an item as carried) is refused unless the item's
  latest such check found no transfer and is still current (no attempt was made since).
- `transfer_attempt.sources`: what a transfer pays besides its own month (months whose unpaid money it
  carries, reversed transfers whose money it pays again), stored with the claim so a re-sent attempt sends
  the same metadata; the transfer's metadata names them, so any rebuilt ledger can recognise the payment.
"""

import sqlalchemy as sa
from alembic import op

from sorae_payouts.ledger.migrations import revision_0012_guards as guards

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

_CHECK = "payout_item_stripe_check"
_LATEST_CHECK = (
    f"(SELECT k.found_transfer_id IS NULL AND k.latest_attempt_pk IS NOT DISTINCT FROM (SELECT MAX(a.attempt_pk) "
    "FROM transfer_attempt a WHERE a.payout_item_id = NEW.payout_item_id) "
    f"FROM {_CHECK} k WHERE k.payout_item_id = NEW.payout_item_id ORDER BY k.check_pk DESC LIMIT 1)"
)
_GUARDS = (
    (f"guard_{_CHECK}_update", _CHECK, "UPDATE", "1 = 1", "Stripe checks of carried items are append-only"),
    (f"guard_{_CHECK}_delete", _CHECK, "DELETE", "1 = 1", "Stripe checks of carried items are append-only"),
    (
        "guard_payout_item_carry_confirmed",
        "payout_item_carry",
        "INSERT",
        f"COALESCE({_LATEST_CHECK}, FALSE) = FALSE",
        "an unpaid item is carried only after Stripe confirmed it was not paid (and no attempt since)",
    ),
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.add_column("transfer_attempt", sa.Column("sources", sa.Text))
    op.create_table(
        _CHECK,
        sa.Column("check_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.program_id"), nullable=False),
        sa.Column(
            "payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False, index=True
        ),
        sa.Column("latest_attempt_pk", sa.BigInteger),
        sa.Column("paying_account", sa.String(64), nullable=False),
        sa.Column("groups_scanned", sa.Text, nullable=False),
        sa.Column("found_transfer_id", sa.String(64)),
        sa.Column("checked_at", TS, nullable=False),
    )
    for name, table, event, condition, message in _GUARDS:
        guards.create_guard(op, _sqlite(), name, table, event, condition, message)
    if not _sqlite():
        op.execute(
            f"CREATE TRIGGER guard_{_CHECK}_truncate BEFORE TRUNCATE ON {_CHECK} "
            "FOR EACH STATEMENT EXECUTE FUNCTION guard_truncate()"
        )


def downgrade() -> None:
    for name, table, *_ in _GUARDS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if _sqlite() else f" ON {table}"))
        if not _sqlite():
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table(_CHECK)
    if not _sqlite():  # SQLite keeps the nullable column (its DROP COLUMN re-checks every foreign key)
        op.drop_column("transfer_attempt", "sources")
