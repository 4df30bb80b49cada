"""Programs: one per merchant; every record carries its program.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26

- `program` (one row per merchant: name, who pays it, its policy overrides, status) with the append-only
  `program_event` (every change, by whom, from where); the existing ledger becomes the program `default`,
  paid from the platform account (STRIPE_API_KEY) with the deployment's policy, as before.
- `program_funding` (append-only): the Stripe charges and top-ups that funded a program on a shared
  platform account, with their ids.
- `program_id` on affiliate, commission, order_event, commission_period, period_snapshot,
  commission_adjustment, payout_batch, payout_item and transfer_attempt; natural keys become unique
  within a program (affiliate ids, commission ids, event ids, one period and one batch per program).
  Existing rows become the `default` program's. No default is left on the rebuilt keys: code that
  forgets the program fails instead of filing rows under `default`.
- `transfer_attempt.source_transaction`: the charge a transfer is tied to; the database refuses an
  attempt that would take more from a charge than the charge (or another program's charge).
- Triggers that join on a period or an affiliate now join on the program too; new guards keep an item
  in its batch's program and an attempt in its item's program.
- The `affiliate_payout_history` view gains `program_id` (last column) and scopes its sums by program.

PostgreSQL: ALTER TABLE in place. SQLite: the tables whose keys change are rebuilt (`sqlite_rebuild`).
Downgrade is refused: restore the backup taken before upgrading (the rebuilt keys cannot be undone
without losing the program of each row once a second program exists).
"""

import sqlalchemy as sa
from alembic import op

from sorae_payouts.ledger.migrations import revision_0012 as spec
from sorae_payouts.ledger.migrations import revision_0012_guards as guards
from sorae_payouts.ledger.migrations import sqlite_rebuild

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DEFAULT_PROGRAM = "default"
PROGRAM = "program_id"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    _create_program_tables()
    if _sqlite():
        _upgrade_sqlite()
    else:
        _upgrade_postgresql()
    op.add_column("transfer_attempt", sa.Column(PROGRAM, sa.String(64), nullable=False, server_default=DEFAULT_PROGRAM))
    op.add_column("transfer_attempt", sa.Column("source_transaction", sa.String(64)))
    op.create_index("ix_transfer_attempt_source_transaction", "transfer_attempt", ["source_transaction"])
    for guard in guards.program_guards():
        guards.create_guard(op, _sqlite(), *guard)
    guards.create_source_transaction_guard(op, _sqlite())
    op.execute(guards.view_sql(op.get_bind().dialect.name))
    if not _sqlite():
        for table in ("program", "program_event", "program_funding"):
            op.execute(
                f"CREATE TRIGGER guard_{table}_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION guard_truncate()"
            )


def _create_program_tables() -> None:
    for table in spec.new_tables():
        table.create(op.get_bind())
    op.execute(
        sa.text(
            "INSERT INTO program (program_id, name, paying_account_ref, policy, status, created_at, "
            "created_by) VALUES ('default', 'Default program', NULL, '{}', 'active', "
            "CURRENT_TIMESTAMP, 'migration 0012')"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO program_event (program_id, event, change, recorded_by, recorded_at) "
            "VALUES ('default', 'added', '{}', 'migration 0012', CURRENT_TIMESTAMP)"
        )
    )


def _upgrade_sqlite() -> None:
    tables = spec.rebuilt_tables()
    op.execute("DROP VIEW IF EXISTS affiliate_payout_history")
    captured = sqlite_rebuild.capture_triggers(t.name for t in tables)
    sqlite_rebuild.begin_rebuild()
    bind = op.get_bind()
    for table in tables:
        old_columns = {r[1] for r in bind.exec_driver_sql(f'PRAGMA table_info("{table.name}")')}
        copy = {c.name: (c.name if c.name in old_columns else f"'{DEFAULT_PROGRAM}'") for c in table.columns}
        sqlite_rebuild.rebuild(table, copy)
    sqlite_rebuild.recreate_triggers(
        captured, replaced={g[0] for g in [*guards.replaced_guards(), *guards.replaced_insert_set_guards()]}
    )
    for guard in guards.replaced_guards():
        guards.create_guard(op, True, *guard)
    for guard in guards.replaced_insert_set_guards():
        guards.create_insert_set_guard(op, True, *guard)
    sqlite_rebuild.end_rebuild()


def _upgrade_postgresql() -> None:
    op.execute("DROP VIEW IF EXISTS affiliate_payout_history")
    for statement in spec.postgresql_alterations():
        op.execute(statement)
    for guard in guards.replaced_guards():
        op.execute(f"DROP TRIGGER IF EXISTS {guard[0]} ON {guard[1]}")
        op.execute(f"DROP FUNCTION IF EXISTS {guard[0]}()")
        guards.create_guard(op, False, *guard)
    for guard in guards.replaced_insert_set_guards():
        op.execute(f"DROP TRIGGER IF EXISTS {guard[0]} ON {guard[1]}")
        op.execute(f"DROP FUNCTION IF EXISTS {guard[0]}()")
        guards.create_insert_set_guard(op, False, *guard)


def downgrade() -> None:
    raise RuntimeError(
        "revision 0012 (programs) cannot be downgraded: restore the backup taken before "
        "upgrading (every row now belongs to a program)"
    )
