"""Operators sign: keys, confirmed registry changes, signed approvals and reversal decisions.

Revision ID: 0050
Revises: 0016
Create Date: 2026-12-07

Two people are two people (issue 16, defects 5 and 6). The engine refuses unsigned or unconfirmed work;
these guards make the database refuse the same rows whoever writes them (the application's role has
DML on every table). The database cannot check an Ed25519 signature: it checks the *shape* (a
signature and the current key of an active operator, a confirmation by another operator), and the
executor verifies the signatures themselves before any money moves (`month_end.approvals`).

- `operator_bootstrap`: the deployment administrator's registration of a program's first operators
  (or, on PostgreSQL, a re-seeding): only the database owner on PostgreSQL; on SQLite, which has no
  roles, once per program. It names how many keys it registers; no key can join it afterwards.
- `operator_key` (append-only): the public keys, unique within a program, each registered by a
  bootstrap or by a confirmed `add`/`rekey` request (once).
- `operator_request` / `operator_confirmation` (append-only): registry and approval-policy changes
  signed by an active operator, taking effect once a *different* active operator (not their
  subject) confirms them with their own signature.
- `operator`: `key_id` (current key), `request_pk` / `bootstrap_pk` (what authorized the last
  change); enabling, renaming and re-keying need a confirmed request (or a bootstrap).
- `program_approval_policy` (append-only): a program's dual-approval thresholds: the first row is
  written by the database when the program is created, every later one needs a confirmed `policy`
  request; `program.policy`'s thresholds may only change to the latest row.
- `batch_approval.key_id/signature`, `reversal_decision.operator_id/key_id/signature`: a new approval
  or operator decision carries a signature and the current key of an active operator of its program;
  the recovery policy's decisions name their reversal request on the same item.
- `approval_legacy_batch`: batches already approved before this revision, whose unsigned approvals
  still count (filled here; nothing may be added later).
"""

from alembic import op

from sorae_payouts.ledger.migrations import revision_0012_guards as guards
from sorae_payouts.ledger.migrations import revision_0050 as spec

revision = "0050"
down_revision = "0016"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    sqlite = _sqlite()
    for table in spec.new_tables():
        table.create(op.get_bind())
    for table, column in spec.new_columns():
        op.add_column(table, column)
    op.execute("INSERT INTO approval_legacy_batch (batch_id) SELECT batch_id FROM payout_batch WHERE status <> 'draft'")
    op.execute(
        "INSERT INTO program_approval_policy (program_id, dual_approval_over_minor, request_pk, recorded_at) "
        f"SELECT program_id, {spec.approval_part('policy', sqlite)}, NULL, created_at FROM program"
    )
    for guard in spec.guards(sqlite):
        guards.create_guard(op, sqlite, *guard)
    spec.create_program_insert_trigger(op, sqlite)
    if not sqlite:
        for table in spec.NEW_TABLES:
            op.execute(
                f"CREATE TRIGGER guard_{table}_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION guard_truncate()"
            )


def downgrade() -> None:
    sqlite = _sqlite()
    spec.drop_program_insert_trigger(op, sqlite)
    for name, table, *_ in reversed(spec.guards(sqlite)):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if sqlite else f" ON {table}"))
        if not sqlite:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    for table, column in reversed(spec.new_columns()):
        op.drop_column(table, column.name)
    for table in reversed(spec.NEW_TABLES):
        if not sqlite:
            op.execute(f"DROP TRIGGER IF EXISTS guard_{table}_truncate ON {table}")
        op.drop_table(table)
