"""The payout item state machine in the database; retry and carry records; truthful batch statuses.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

- Every status change of `payout_item` must be a transition of `execution.item_states` (a frozen copy
  lives below: a migration must not change when the code does; a test keeps both equal). A posted item
  can never be pending again, whatever SQL is run.
- failed -> pending needs an appended `payout_item_retry` row for the item's latest attempt; an unpaid
  item (failed or pending) closed as `carried_forward` needs an appended `payout_item_carry` row naming
  the batch its amount flows into. Both tables are append-only.
- `payout_batch.status` gains `completed_with_exceptions`; a carried item closed after approval keeps
  its reviewed `carry_reason` (NULL), so the CHECK tying status to carry_reason becomes "a carry reason
  only on a carried item". SQLite cannot ALTER a CHECK: the table definitions are edited in place with
  `writable_schema`, the procedure SQLite documents for loosening a CHECK (section 7 of ALTER TABLE).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

# Frozen copy of sorae_payouts.ledger.item_states.TRANSITIONS at this revision.
TRANSITIONS = {
    "pending": ("processing", "blocked", "carried_forward"),
    "processing": ("posted", "failed", "pending", "blocked"),
    "failed": ("pending", "carried_forward"),
    "posted": ("partially_reversed", "reversed"),
    "partially_reversed": ("reversed",),
}
INITIAL = ("pending", "carried_forward")

_PAIRS = ", ".join(f"'{old}>{new}'" for old, news in TRANSITIONS.items() for new in news)
_LATEST_ATTEMPT = "(SELECT MAX(a.attempt_number) FROM transfer_attempt a WHERE a.payout_item_id = NEW.payout_item_id)"
GUARDS = [
    (
        "guard_payout_item_transition",
        "UPDATE",
        f"NEW.status IS DISTINCT FROM OLD.status AND (OLD.status || '>' || NEW.status) NOT IN ({_PAIRS})",
        "payout item status change not allowed by the state machine",
    ),
    (
        "guard_payout_item_retry_record",
        "UPDATE",
        "OLD.status = 'failed' AND NEW.status = 'pending' AND NOT EXISTS (SELECT 1 FROM payout_item_retry r "
        f"WHERE r.payout_item_id = NEW.payout_item_id AND r.for_attempt_number = {_LATEST_ATTEMPT})",
        "a failed item becomes pending only with a retry record for its latest attempt",
    ),
    (
        "guard_payout_item_carry_record",
        "UPDATE",
        "NEW.status = 'carried_forward' AND OLD.status <> 'carried_forward' AND NOT EXISTS "
        "(SELECT 1 FROM payout_item_carry c WHERE c.payout_item_id = NEW.payout_item_id)",
        "an unpaid item is closed as carried forward only with a carry record",
    ),
    (
        "guard_payout_item_initial",
        "INSERT",
        f"NEW.status NOT IN ({', '.join(repr(s) for s in INITIAL)}) "
        "OR (NEW.status = 'carried_forward' AND NEW.carry_reason IS NULL)",
        "a payout item is built pending or carried forward with its reason",
    ),
]
APPEND_ONLY = ("payout_item_retry", "payout_item_carry")

_CHECK_EDITS = [  # (table, old CHECK text, new CHECK text)
    (
        "payout_item",
        "CHECK ((status = 'carried_forward') = (carry_reason IS NOT NULL))",
        "CHECK (carry_reason IS NULL OR status = 'carried_forward')",
    ),
    (
        "payout_batch",
        "CHECK (status IN ('draft', 'approved', 'executing', 'completed', 'partially_completed'))",
        "CHECK (status IN ('draft', 'approved', 'executing', 'completed', 'partially_completed', "
        "'completed_with_exceptions'))",
    ),
    ("payout_batch", "status VARCHAR(24) NOT NULL", "status VARCHAR(32) NOT NULL"),
]


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _guard(name: str, table: str, event: str, condition: str, message: str) -> None:
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


def _sqlite_edit_definitions(edits: list[tuple[str, str, str]]) -> None:
    """Replace text in SQLite's stored table definitions (only loosening CHECKs / widening a VARCHAR)."""
    bind = op.get_bind()
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    for table, old, new in edits:
        sql = bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).scalar_one()
        if sql.count(old) != 1:
            raise RuntimeError(f"revision 0008: unexpected definition of {table}; CHECK not found")
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql.replace(old, new), table)
        )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    op.create_table(
        "payout_item_retry",
        sa.Column("retry_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False),
        sa.Column("for_attempt_number", sa.Integer, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.UniqueConstraint("payout_item_id", "for_attempt_number", name="uq_payout_item_retry_attempt"),
    )
    op.create_table(
        "payout_item_carry",
        sa.Column("carry_pk", PK, primary_key=True, autoincrement=True),
        sa.Column(
            "payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False, unique=True
        ),
        sa.Column("from_batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False),
        sa.Column("into_batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False),
        sa.Column("affiliate_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, sa.CheckConstraint("amount_minor > 0"), nullable=False),
        sa.Column("unpaid_status", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("carried_at", TS, nullable=False),
        sa.Index("ix_payout_item_carry_into", "into_batch_id"),
    )
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            _guard(f"guard_{table}_{event.lower()}", table, event, "1 = 1", f"{table} rows are append-only")
    for name, event, condition, message in GUARDS:
        _guard(name, "payout_item", event, condition, message)
    if _sqlite():
        _sqlite_edit_definitions(_CHECK_EDITS)
        return
    op.execute("ALTER TABLE payout_batch ALTER COLUMN status TYPE VARCHAR(32)")  # completed_with_exceptions
    op.execute("ALTER TABLE payout_item DROP CONSTRAINT ck_payout_item_carry_reason")
    op.execute(
        "ALTER TABLE payout_item ADD CONSTRAINT ck_payout_item_carry_reason "
        "CHECK (carry_reason IS NULL OR status = 'carried_forward')"
    )
    op.execute("ALTER TABLE payout_batch DROP CONSTRAINT ck_payout_batch_status")
    op.execute(
        "ALTER TABLE payout_batch ADD CONSTRAINT ck_payout_batch_status CHECK (status IN ('draft', "
        "'approved', 'executing', 'completed', 'partially_completed', 'completed_with_exceptions'))"
    )


def downgrade() -> None:
    # PostgreSQL refuses (CHECK) when a batch is completed_with_exceptions or an item was closed by a carry
    # record: those facts have no form in the older schema. SQLite does not re-validate existing rows.
    guards = [(name, "payout_item") for name, *_ in GUARDS] + [
        (f"guard_{table}_{event.lower()}", table) for table in APPEND_ONLY for event in ("UPDATE", "DELETE")
    ]
    for name, table in guards:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if _sqlite() else f" ON {table}"))
        if not _sqlite():
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    for table in reversed(APPEND_ONLY):
        op.drop_table(table)
    if _sqlite():
        _sqlite_edit_definitions([(table, new, old) for table, old, new in _CHECK_EDITS])
        return
    op.execute("ALTER TABLE payout_item DROP CONSTRAINT ck_payout_item_carry_reason")
    op.execute(
        "ALTER TABLE payout_item ADD CONSTRAINT ck_payout_item_carry_reason "
        "CHECK ((status = 'carried_forward') = (carry_reason IS NOT NULL))"
    )
    op.execute("ALTER TABLE payout_batch DROP CONSTRAINT ck_payout_batch_status")
    op.execute(
        "ALTER TABLE payout_batch ADD CONSTRAINT ck_payout_batch_status CHECK (status IN ('draft', "
        "'approved', 'executing', 'completed', 'partially_completed'))"
    )
    op.execute("ALTER TABLE payout_batch ALTER COLUMN status TYPE VARCHAR(24)")
