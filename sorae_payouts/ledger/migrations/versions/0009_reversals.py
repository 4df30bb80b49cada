"""Money after the transfer: reversals on items, operators' decisions, owed-again carries, recoveries.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

- `payout_item.reversed_minor`: how much of the item's transfer Stripe has reversed (copied from the
  appended `transfer_status_event` by refresh, with the item status `partially_reversed` / `reversed`).
  It never decreases and never exceeds the amount (trigger).
- `reversal_decision` (append-only): an operator's (or the recovery policy's) decision about reversed
  money: `owe_again` (flows into the affiliate's next built batch as carried-in) or `write_off`
  (closed, with the reason). The decided total of an item never exceeds its reversed amount (trigger).
- `owed_again_carry`: which batch carries an owed-again decision (one batch per decision, unique);
  written by the manifest build and only changeable while that batch is a draft (trigger).
- `transfer_reversal_request`: a reversal we ask Stripe for (negative-balance recovery): idempotency
  key stored before the call, outcome after; terminal requests immutable (trigger).
- The `affiliate_payout_history` view is replaced (adds reversal, decision and carry columns) and an
  index on `commission (affiliate_id, period, currency)` serves one affiliate's history.
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

_BATCH_DRAFT = "EXISTS (SELECT 1 FROM payout_batch b WHERE b.batch_id = {row}.batch_id AND b.status = 'draft')"
GUARDS = [
    (
        "guard_payout_item_reversed",
        "payout_item",
        "UPDATE",
        "NEW.reversed_minor < OLD.reversed_minor OR NEW.reversed_minor < 0 OR NEW.reversed_minor > NEW.amount_minor",
        "a reversed amount only grows, up to the item amount",
    ),
    *[
        (
            f"guard_reversal_decision_{ev.lower()}",
            "reversal_decision",
            ev,
            "1 = 1",
            "reversal_decision rows are append-only",
        )
        for ev in ("UPDATE", "DELETE")
    ],
    (
        "guard_reversal_decision_insert",
        "reversal_decision",
        "INSERT",
        "NEW.amount_minor + COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d "
        "WHERE d.payout_item_id = NEW.payout_item_id), 0) > "
        "(SELECT i.reversed_minor FROM payout_item i WHERE i.payout_item_id = NEW.payout_item_id)",
        "a decision cannot exceed the reversed amount still pending",
    ),
    ("guard_owed_again_carry_update", "owed_again_carry", "UPDATE", "1 = 1", "owed_again_carry rows are immutable"),
    (
        "guard_owed_again_carry_insert",
        "owed_again_carry",
        "INSERT",
        f"NOT {_BATCH_DRAFT.format(row='NEW')}",
        "owed-again money is carried only into a draft batch",
    ),
    (
        "guard_owed_again_carry_delete",
        "owed_again_carry",
        "DELETE",
        f"NOT {_BATCH_DRAFT.format(row='OLD')}",
        "approved payout batch manifest is immutable",
    ),
    (
        "guard_transfer_reversal_request_update",
        "transfer_reversal_request",
        "UPDATE",
        "OLD.state IN ('succeeded', 'failed')",
        "terminal reversal request is immutable",
    ),
    (
        "guard_transfer_reversal_request_delete",
        "transfer_reversal_request",
        "DELETE",
        "1 = 1",
        "reversal requests are never deleted",
    ),
]


# The minimum payout that applied to the item (as in 0004): the per-currency minimum, else the default.
MINIMUM = {
    "sqlite": "json_extract(b.policy, '$.minimum_minor.' || i.currency), "
    "json_extract(b.policy, '$.default_minimum_minor')",
    "postgresql": "b.policy -> 'minimum_minor' ->> i.currency, b.policy ->> 'default_minimum_minor'",
}

# Literal SQL (frozen history). Columns 1-20 are revision 0004's, unchanged; the rest are new (the
# column contract is in docs/architecture.md, "The affiliate history view").
VIEW_SQL = """
CREATE VIEW affiliate_payout_history AS
SELECT i.payout_item_id,
       i.affiliate_id,
       b.period,
       i.batch_id,
       i.currency,
       i.commission_count,
       i.period_amount_minor AS earned_minor,
       i.carried_in_minor,
       i.amount_minor,
       i.status AS item_status,
       i.carry_reason,
       i.hold_reason,
       CAST(COALESCE({minimum}) AS BIGINT) AS minimum_minor,
       a.attempt_number,
       a.state AS attempt_state,
       a.stripe_transfer_id,
       a.error_code,
       CAST(COALESCE((SELECT SUM(c.amount_minor) FROM commission c
                      WHERE c.affiliate_id = i.affiliate_id AND c.period = b.period
                        AND c.currency = i.currency), 0) AS BIGINT) AS gross_minor,
       CAST(COALESCE((SELECT SUM(j.amount_minor) FROM commission_adjustment j
                      WHERE j.booked_period = b.period AND j.kind = 'in_period'
                        AND j.affiliate_id = i.affiliate_id AND j.currency = i.currency), 0) AS BIGINT)
           AS in_period_adjustments_minor,
       CAST(COALESCE((SELECT SUM(j.amount_minor) FROM commission_adjustment j
                      WHERE j.booked_period = b.period AND j.kind = 'clawback'
                        AND j.affiliate_id = i.affiliate_id AND j.currency = i.currency), 0) AS BIGINT)
           AS clawbacks_minor,
       i.reversed_minor,
       (SELECT MAX(e.recorded_at) FROM transfer_status_event e JOIN transfer_attempt x ON x.attempt_pk = e.attempt_pk
        WHERE x.payout_item_id = i.payout_item_id AND e.amount_reversed_minor > 0) AS reversed_at,
       CAST(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                      WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'owe_again'), 0) AS BIGINT)
           AS owed_again_minor,
       CAST(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                      WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'write_off'), 0) AS BIGINT)
           AS written_off_minor,
       CAST(i.reversed_minor - COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                                         WHERE d.payout_item_id = i.payout_item_id), 0) AS BIGINT)
           AS reversal_pending_minor,
       (SELECT MIN(ob.period) FROM owed_again_carry o JOIN reversal_decision d ON d.decision_pk = o.decision_pk
        JOIN payout_batch ob ON ob.batch_id = o.batch_id WHERE d.payout_item_id = i.payout_item_id)
           AS owed_again_in_period,
       (SELECT MIN(nb.period) FROM payout_batch nb WHERE nb.period > b.period) AS next_batch_period,
       CAST(CASE WHEN i.status IN ('pending', 'processing', 'failed', 'blocked') AND i.amount_minor > 0
                 THEN i.amount_minor ELSE 0 END AS BIGINT) AS outstanding_minor
FROM payout_item i
JOIN payout_batch b ON b.batch_id = i.batch_id
LEFT JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id AND a.attempt_number =
     (SELECT MAX(x.attempt_number) FROM transfer_attempt x WHERE x.payout_item_id = i.payout_item_id)
"""


def _revision_0004():
    """Revision 0004's module (its file name starts with a digit, so it is loaded by path)."""
    path = Path(__file__).with_name("0004_affiliate_history_view.py")
    spec = importlib.util.spec_from_file_location("sorae_revision_0004", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _create_guard(name: str, table: str, event: str, condition: str, message: str) -> None:
    """Same shape as revision 0001's guards (PostgreSQL forbids sub-queries in a trigger's WHEN)."""
    if _sqlite():
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW WHEN {condition} "
            f"BEGIN SELECT RAISE(ABORT, 'sorae ledger: {message}'); END"
        )
        return
    op.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF {condition} THEN RAISE EXCEPTION 'sorae ledger: {message}' USING ERRCODE = 'P0001'; END IF; "
        "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$"
    )
    op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")


def upgrade() -> None:
    with op.batch_alter_table("payout_item") as batch:
        batch.add_column(sa.Column("reversed_minor", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "reversal_decision",
        sa.Column("decision_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column(
            "payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False, index=True
        ),
        sa.Column("affiliate_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("reversal_request_pk", sa.BigInteger, unique=True),
        sa.Column("decided_at", TS, nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_reversal_decision_amount"),
        sa.CheckConstraint("decision IN ('owe_again', 'write_off')", name="ck_reversal_decision_kind"),
        sa.CheckConstraint("decision = 'owe_again' OR reason IS NOT NULL", name="ck_reversal_decision_reason"),
    )
    op.create_table(
        "owed_again_carry",
        sa.Column("decision_pk", sa.BigInteger, sa.ForeignKey("reversal_decision.decision_pk"), primary_key=True),
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False, index=True),
        sa.Column("affiliate_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "transfer_reversal_request",
        sa.Column("request_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("period", sa.Date, nullable=False),
        sa.Column("affiliate_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False),
        sa.Column("stripe_transfer_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stripe_reversal_id", sa.String(64)),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint(
            "program_id", "period", "affiliate_id", "currency", "sequence", name="uq_transfer_reversal_request_sequence"
        ),
        sa.CheckConstraint("state IN ('processing', 'succeeded', 'failed')", name="ck_transfer_reversal_request_state"),
        sa.CheckConstraint("amount_minor > 0", name="ck_transfer_reversal_request_amount"),
    )
    for guard in GUARDS:
        _create_guard(*guard)
    # The portal's history: one affiliate's commissions per month without touching other affiliates.
    # Covering (amount included): the per-month sums read the index only. Adjustments are served by
    # ix_adjustment_booked (booked_period, affiliate_id, currency) already.
    op.create_index(
        "ix_commission_affiliate_period", "commission", ["affiliate_id", "period", "currency", "amount_minor"]
    )
    op.execute("DROP VIEW IF EXISTS affiliate_payout_history")
    op.execute(VIEW_SQL.format(minimum=MINIMUM[op.get_bind().dialect.name]))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DROP VIEW IF EXISTS affiliate_payout_history")
    op.drop_index("ix_commission_affiliate_period", "commission")
    for name, table, *_ in reversed(GUARDS):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if _sqlite() else f" ON {table}"))
        if not _sqlite():
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("transfer_reversal_request")
    op.drop_table("owed_again_carry")
    op.drop_table("reversal_decision")
    with op.batch_alter_table("payout_item") as batch:  # SQLite recreates the table: view dropped above
        batch.drop_column("reversed_minor")
    previous = _revision_0004()
    op.execute(previous.VIEW_SQL.format(minimum=previous._MINIMUM[dialect]))
