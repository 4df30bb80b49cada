"""Affiliate payout history: a read-only view, one row per payout item, for the affiliate portal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

`affiliate_payout_history` answers "what happened to my commissions each month?" for one affiliate:
what was earned (and how: gross commissions, reversals inside the month, clawbacks of earlier months
booked in it), what was carried in, what was due, and what became of it (the item status and the
latest Stripe transfer attempt).

Read-only, by construction and by grant:
- The view joins several tables, so neither SQLite nor PostgreSQL can write through it (PostgreSQL
  only auto-updates single-table views; SQLite never updates views without INSTEAD OF triggers).
- The portal's database role gets SELECT on this view and nothing else, e.g.
  `GRANT SELECT ON affiliate_payout_history TO sorae_portal;` (roles are deployment configuration,
  not part of the migrations). A PostgreSQL view reads its tables with its owner's rights, so the
  portal needs no grant on the ledger tables themselves.
- The view holds every affiliate's rows: the reader must filter by the signed-in affiliate
  (`sorae_payouts.portal.history.affiliate_history` does, with a bound parameter).
- Deliberately absent: idempotency keys, Stripe request ids, Stripe error messages and "unknown
  outcome" notes. They are internal and can name other accounts or our own infrastructure.

Columns: payout_item_id, affiliate_id, period (month start), batch_id, currency, commission_count,
earned_minor (= payout_item.period_amount_minor), carried_in_minor, amount_minor, item_status,
carry_reason, hold_reason, minimum_minor (the batch policy's minimum payout for the item's currency),
attempt_number / attempt_state / stripe_transfer_id / error_code (latest attempt, NULL when none),
gross_minor, in_period_adjustments_minor, clawbacks_minor. earned_minor always equals
gross_minor + in_period_adjustments_minor + clawbacks_minor (the manifest adds up the same rows).

The SQL is the same on both backends except for reading the minimum out of the `policy` JSON
(`json_extract` on SQLite, `->` / `->>` on PostgreSQL). Views are not tables, so Alembic's schema
comparison ignores them and `sorae_payouts.ledger.schema` does not declare it.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The minimum payout that applied to the item: the per-currency minimum, else the policy default.
_MINIMUM = {
    "sqlite": "json_extract(b.policy, '$.minimum_minor.' || i.currency), "
    "json_extract(b.policy, '$.default_minimum_minor')",
    "postgresql": "b.policy -> 'minimum_minor' ->> i.currency, b.policy ->> 'default_minimum_minor'",
}


# Literal SQL (frozen history); {minimum} is the only per-backend part. The CASTs keep every amount
# an integer: PostgreSQL's SUM(bigint) is numeric.
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
                      WHERE c.period = b.period AND c.affiliate_id = i.affiliate_id
                        AND c.currency = i.currency), 0) AS BIGINT) AS gross_minor,
       CAST(COALESCE((SELECT SUM(j.amount_minor) FROM commission_adjustment j
                      WHERE j.booked_period = b.period AND j.kind = 'in_period'
                        AND j.affiliate_id = i.affiliate_id AND j.currency = i.currency), 0) AS BIGINT)
           AS in_period_adjustments_minor,
       CAST(COALESCE((SELECT SUM(j.amount_minor) FROM commission_adjustment j
                      WHERE j.booked_period = b.period AND j.kind = 'clawback'
                        AND j.affiliate_id = i.affiliate_id AND j.currency = i.currency), 0) AS BIGINT)
           AS clawbacks_minor
FROM payout_item i
JOIN payout_batch b ON b.batch_id = i.batch_id
LEFT JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id AND a.attempt_number =
     (SELECT MAX(x.attempt_number) FROM transfer_attempt x WHERE x.payout_item_id = i.payout_item_id)
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(VIEW_SQL.format(minimum=_MINIMUM[dialect]))
    # The portal reads one affiliate at a time: without this, every lookup scans all months' items.
    op.create_index("ix_payout_item_affiliate", "payout_item", ["affiliate_id", "currency"])


def downgrade() -> None:
    op.drop_index("ix_payout_item_affiliate", "payout_item")
    op.execute("DROP VIEW IF EXISTS affiliate_payout_history")
