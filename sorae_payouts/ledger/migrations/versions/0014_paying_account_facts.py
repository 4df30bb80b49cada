"""Who pays a program is a fact from Stripe: the account its key resolved to, recorded once.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Until now a program's paying account was its label: `paying_account_ref` NULL meant "the platform
account", `env:`/`secrets:` meant "its own account". A reference whose key is the platform's own key was
then treated as an own account (unfunded, it spent the other programs' charges), and a key of another
Stripe account under a program's reference went unnoticed (reconcile reported every transfer missing).

- `program.paying_account_id`: the Stripe account id (`GET /v1/account`) the program's key resolved to
  the first time it was used (recorded by `registry.paying_accounts.ProgramGateways`). Once recorded it
  changes only together with `paying_account_ref` (an operator re-pointing the program, appended to its
  history); a key that resolves to another account is refused by every command.
- `platform_account`: one row, the account id of the deployment's platform key (STRIPE_API_KEY), recorded
  the first time it is learned and never changed: programs whose account is this one share the platform
  balance and spend only their own funding.
"""

import sqlalchemy as sa
from alembic import op

from sorae_payouts.ledger.migrations import revision_0012_guards as guards

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_REPOINTED = (
    "OLD.paying_account_id IS NOT NULL AND NEW.paying_account_id IS DISTINCT FROM OLD.paying_account_id "
    "AND NEW.paying_account_ref IS NOT DISTINCT FROM OLD.paying_account_ref"
)
_GUARDS = (
    (
        "guard_program_paying_account",
        "program",
        "UPDATE",
        _REPOINTED,
        "the recorded paying account of a program changes only when its paying account reference does",
    ),
    ("guard_platform_account_update", "platform_account", "UPDATE", "1 = 1", "the platform account is recorded once"),
    ("guard_platform_account_delete", "platform_account", "DELETE", "1 = 1", "the platform account is recorded once"),
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.add_column("program", sa.Column("paying_account_id", sa.String(64)))  # ALTER TABLE ADD: triggers kept
    op.create_table(
        "platform_account",
        sa.Column("singleton", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.CheckConstraint("singleton = 1", name="ck_platform_account_singleton"),
    )
    for name, table, event, condition, message in _GUARDS:
        guards.create_guard(op, _sqlite(), name, table, event, condition, message)
    if not _sqlite():
        op.execute(
            "CREATE TRIGGER guard_platform_account_truncate BEFORE TRUNCATE ON platform_account "
            "FOR EACH STATEMENT EXECUTE FUNCTION guard_truncate()"
        )


def downgrade() -> None:
    for name, table, *_ in _GUARDS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if _sqlite() else f" ON {table}"))
        if not _sqlite():
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("platform_account")
    if not _sqlite():  # SQLite keeps the nullable column (its DROP COLUMN re-checks every foreign key)
        op.drop_column("program", "paying_account_id")
