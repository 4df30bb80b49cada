"""An approval belongs to its batch's program, enforced by the database.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26

`batch_approval.program_id` (revision 0006) names the program whose operators may approve, and the
code counts only approvals whose program is the batch's (`approvals.verify_batch_approvals`). Until
now only the code said so: an insider, or a script that forgets the column (it defaults to
`default`), could record an approval of `acme`'s batch under another program, where other operators
are registered. This guard refuses such a row at INSERT, on both databases, so the approval history
itself cannot hold one. Every approval recorded so far satisfies it (before 0012 every batch and
every approval belonged to `default`; since, the code writes the batch's program).
"""

from alembic import op

from sorae_payouts.ledger.migrations import revision_0012_guards as guards

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NAME = "guard_batch_approval_program"
CONDITION = (
    "NOT EXISTS (SELECT 1 FROM payout_batch b WHERE b.batch_id = NEW.batch_id AND b.program_id = NEW.program_id)"
)
MESSAGE = "an approval belongs to the program of its batch"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    guards.create_guard(op, _sqlite(), NAME, "batch_approval", "INSERT", CONDITION, MESSAGE)


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {NAME}" + ("" if _sqlite() else " ON batch_approval"))
    if not _sqlite():
        op.execute(f"DROP FUNCTION IF EXISTS {NAME}()")
