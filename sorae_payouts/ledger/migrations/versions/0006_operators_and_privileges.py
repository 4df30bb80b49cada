"""Operators as identities, approvals that name them, and guards the application role cannot lift.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

- `operator` (one row per normalized identity and program, never deleted) and its append-only history
  `operator_event` (added / disabled / enabled, by whom, when, from where).
- `batch_approval` records the approver's normalized identity, host, OS user and Dagster run id; a new
  approval must name an active registered operator, once per batch and manifest hash.
- `payout_batch` may leave `draft` only for `approved`, and only with a registered approval of its
  current manifest hash (the exact count stays the executor's check: it depends on the frozen policy).
- PostgreSQL: `BEFORE TRUNCATE` guards on every ledger table (TRUNCATE fires no row triggers).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
DEFAULT_PROGRAM = "default"  # sorae_payouts.registry.programs.DEFAULT_PROGRAM, frozen here as migrations must be

_ACTIVE_OPERATOR = (
    "EXISTS (SELECT 1 FROM operator o WHERE o.program_id = NEW.program_id "
    "AND o.operator_id = NEW.operator_id AND o.status = 'active')"
)
_REGISTERED_APPROVAL = (
    "EXISTS (SELECT 1 FROM batch_approval a WHERE a.batch_id = NEW.batch_id "
    "AND a.manifest_hash = NEW.manifest_hash AND a.operator_id IS NOT NULL)"
)

# (trigger name, table, event, condition using OLD/NEW, message): same SQL on SQLite and PostgreSQL.
GUARDS = [
    ("guard_operator_delete", "operator", "DELETE", "1 = 1", "operators are never deleted (approvals refer to them)"),
    (
        "guard_operator_update",
        "operator",
        "UPDATE",
        "NEW.operator_id IS DISTINCT FROM OLD.operator_id OR NEW.program_id IS DISTINCT FROM OLD.program_id "
        "OR NEW.added_at IS DISTINCT FROM OLD.added_at OR NEW.added_by IS DISTINCT FROM OLD.added_by",
        "an operator identity never changes (disable it and register the new one)",
    ),
    *[
        (f"guard_operator_event_{ev.lower()}", "operator_event", ev, "1 = 1", "operator_event rows are append-only")
        for ev in ("UPDATE", "DELETE")
    ],
    (
        "guard_batch_approval_operator",
        "batch_approval",
        "INSERT",
        f"NEW.operator_id IS NULL OR NOT {_ACTIVE_OPERATOR}",
        "an approval must name an active registered operator",
    ),
    (
        "guard_payout_batch_leave_draft",
        "payout_batch",
        "UPDATE",
        "OLD.status = 'draft' AND NEW.status NOT IN ('draft', 'approved')",
        "a draft payout batch can only become approved",
    ),
    (
        "guard_payout_batch_approved",
        "payout_batch",
        "UPDATE",
        f"NEW.status = 'approved' AND OLD.status <> 'approved' AND NOT {_REGISTERED_APPROVAL}",
        "a payout batch becomes approved only with a registered approval of its current manifest hash",
    ),
    (
        "guard_payout_batch_insert",
        "payout_batch",
        "INSERT",
        "NEW.status <> 'draft'",
        "a payout batch starts as a draft",
    ),
]


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table(
        "operator",
        sa.Column("program_id", sa.String(64), nullable=False, server_default=DEFAULT_PROGRAM),
        sa.Column("operator_id", sa.Text, nullable=False),  # normalized identity (NFKC, case-folded, trimmed)
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.Column("added_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("program_id", "operator_id", name="pk_operator"),
        sa.CheckConstraint("status IN ('active', 'disabled')", name="ck_operator_status"),
    )
    op.create_table(
        "operator_event",
        sa.Column("event_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", sa.String(64), nullable=False, server_default=DEFAULT_PROGRAM),
        sa.Column("operator_id", sa.Text, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("host", sa.Text),
        sa.Column("os_user", sa.Text),
        sa.Column("dagster_run_id", sa.Text),
        sa.ForeignKeyConstraint(
            ["program_id", "operator_id"],
            ["operator.program_id", "operator.operator_id"],
            name="fk_operator_event_operator",
        ),
        sa.CheckConstraint("event IN ('added', 'disabled', 'enabled')", name="ck_operator_event_event"),
    )
    op.create_index("ix_operator_event_operator", "operator_event", ["program_id", "operator_id", "recorded_at"])
    # Plain ADD COLUMN (no table rebuild): batch_approval is append-only and its triggers stay as they are.
    op.add_column(
        "batch_approval", sa.Column("program_id", sa.String(64), nullable=False, server_default=DEFAULT_PROGRAM)
    )
    for name in ("operator_id", "host", "os_user", "dagster_run_id"):
        op.add_column("batch_approval", sa.Column(name, sa.Text))
    # One approval per identity per manifest, whatever the spelling (rows before 0006 have no operator_id).
    op.create_index(
        "uq_batch_approval_operator", "batch_approval", ["batch_id", "manifest_hash", "operator_id"], unique=True
    )
    for guard in GUARDS:
        _create_guard(*guard)
    if not _sqlite():
        _create_truncate_guards()


def _create_guard(name: str, table: str, event: str, condition: str, message: str) -> None:
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


def _ledger_tables() -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version' "
        "ORDER BY tablename"
    )
    return [r[0] for r in rows]


def _create_truncate_guards() -> None:
    # One function for all tables; TRUNCATE bypasses the row-level DELETE guards otherwise.
    op.execute(
        "CREATE FUNCTION guard_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'sorae ledger: % cannot be truncated', TG_TABLE_NAME USING ERRCODE = 'P0001'; "
        "END $$"
    )
    for table in _ledger_tables():
        op.execute(
            f"CREATE TRIGGER guard_{table}_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION guard_truncate()"
        )


def downgrade() -> None:
    sqlite = _sqlite()
    if not sqlite:
        for table in _ledger_tables():
            op.execute(f"DROP TRIGGER IF EXISTS guard_{table}_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS guard_truncate()")
    for name, table, *_ in reversed(GUARDS):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if sqlite else f" ON {table}"))
        if not sqlite:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index("uq_batch_approval_operator", "batch_approval")
    for name in ("dagster_run_id", "os_user", "host", "operator_id", "program_id"):
        op.drop_column("batch_approval", name)
    op.drop_table("operator_event")
    op.drop_table("operator")
