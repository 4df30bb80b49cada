"""Every "no more than" rule holds with two transactions at once (PostgreSQL), in the database itself.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

A row trigger that sums the rows already written sees, on PostgreSQL, only what is committed: two
transactions deciding the same 40.00 reversal at once both saw 0 decided and both passed (80.00 decided,
40.00 paid too much). The guards below first lock the row the limit belongs to (`FOR UPDATE`), so a second
writer waits for the first to commit and then sums its row too (PL/pgSQL takes a fresh snapshot per
statement under READ COMMITTED). SQLite serializes writers already (BEGIN IMMEDIATE): same conditions, no
lock needed.

- `reversal_decision`: decisions <= the item's reversed amount (0009's condition, now with the item locked).
- `transfer_reversal_request` (new): what a negative balance's recovery asks Stripe to reverse, in flight or
  done, never exceeds that debt (the negative item of the month's batch), the item locked first.
- (A charge's spending was already serialized on its funding row: revision 0012.)
"""

from alembic import op

from sorae_payouts.ledger.migrations import revision_0012_guards as guards

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_DECISION = "guard_reversal_decision_insert"
_DECISION_LOCK = "PERFORM 1 FROM payout_item WHERE payout_item_id = NEW.payout_item_id FOR UPDATE;"
_DECISION_REFUSED = (
    "NEW.amount_minor + COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d "
    "WHERE d.payout_item_id = NEW.payout_item_id), 0) > "
    "(SELECT i.reversed_minor FROM payout_item i WHERE i.payout_item_id = NEW.payout_item_id)"
)
_DECISION_MESSAGE = "a decision cannot exceed the reversed amount still pending"

_RECOVERY = "guard_transfer_reversal_request_debt"
_DEBT_ITEM = (
    "FROM payout_item i JOIN payout_batch b ON b.batch_id = i.batch_id WHERE b.program_id = NEW.program_id "
    "AND b.period = NEW.period AND i.affiliate_id = NEW.affiliate_id AND i.currency = NEW.currency "
    "AND i.carry_reason = 'negative_balance'"
)
_RECOVERY_LOCK = f"PERFORM 1 {_DEBT_ITEM} FOR UPDATE OF i;"
_RECOVERY_REFUSED = (
    "NEW.purpose = 'negative_balance_recovery' AND NEW.amount_minor + COALESCE((SELECT SUM(r.amount_minor) "
    "FROM transfer_reversal_request r WHERE r.program_id = NEW.program_id AND r.period = NEW.period "
    "AND r.affiliate_id = NEW.affiliate_id AND r.currency = NEW.currency AND r.purpose = NEW.purpose "
    f"AND r.state IN ('processing', 'succeeded')), 0) > COALESCE((SELECT -SUM(i.amount_minor) {_DEBT_ITEM}), 0)"
)
_RECOVERY_MESSAGE = "a recovery cannot reverse more than the negative balance it recovers"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _locking_guard(name: str, table: str, lock: str, condition: str, message: str) -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {lock} "
        f"IF {condition} THEN RAISE EXCEPTION 'sorae ledger: {message}' USING ERRCODE = 'P0001'; END IF; "
        "RETURN NEW; END $$"
    )
    op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")


def upgrade() -> None:
    if _sqlite():
        guards.create_guard(
            op, True, _RECOVERY, "transfer_reversal_request", "INSERT", _RECOVERY_REFUSED, _RECOVERY_MESSAGE
        )
        return
    _locking_guard(_DECISION, "reversal_decision", _DECISION_LOCK, _DECISION_REFUSED, _DECISION_MESSAGE)
    _locking_guard(_RECOVERY, "transfer_reversal_request", _RECOVERY_LOCK, _RECOVERY_REFUSED, _RECOVERY_MESSAGE)


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {_RECOVERY}" + ("" if _sqlite() else " ON transfer_reversal_request"))
    if _sqlite():
        return
    op.execute(f"DROP FUNCTION IF EXISTS {_RECOVERY}()")
    op.execute(f"DROP TRIGGER IF EXISTS {_DECISION} ON reversal_decision")
    op.execute(f"DROP FUNCTION IF EXISTS {_DECISION}()")
    guards.create_guard(op, False, _DECISION, "reversal_decision", "INSERT", _DECISION_REFUSED, _DECISION_MESSAGE)
