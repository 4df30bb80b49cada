"""Unpaid items flow into the next month instead of stalling under an old batch.

When a month's manifest is built, every payable item of an earlier, already executed batch that is
still unpaid (`failed`, or `pending` and held) is closed as `carried_forward` and its amount becomes
carried-in of the new month's item for the same affiliate and currency. Both happen in the manifest's
transaction, each closing with an appended `payout_item_carry` record (the database refuses the status
change without it), so the amount is payable in exactly one place: a `retry` of the old item is refused
and names the item that carries it.

Left alone: items whose outcome is unknown (`processing`: Stripe may have paid them; refresh resolves
them first), `blocked` items (an operator decides), and batches never executed yet (`approved`,
`executing`: their run may be under way).

The closed item keeps its reviewed `carry_reason` (NULL), so the old batch's manifest hash is unchanged
and its remaining work (e.g. an unknown outcome) can still be resolved.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.ledger.sql import text
from sorae_payouts.periods import period_key

class UnpaidItemMoved(Exception):
    """An unpaid item changed status while the new month was being built; nothing was written."""


# Batches whose runs are over: what is unpaid there will not be sent by a run any more.
SETTLED_BATCH_STATUSES = ("partially_completed", "completed_with_exceptions", "completed")

_UNPAID = """
SELECT i.payout_item_id, i.batch_id, i.affiliate_id, i.currency, i.amount_minor, i.status, i.hold_reason,
       (SELECT a.error_code FROM transfer_attempt a WHERE a.payout_item_id = i.payout_item_id
        ORDER BY a.attempt_number DESC LIMIT 1) AS error_code
FROM payout_item i JOIN payout_batch b ON b.batch_id = i.batch_id
WHERE b.period < :period AND b.status IN ('partially_completed', 'completed_with_exceptions', 'completed')
  AND i.carry_reason IS NULL AND i.status IN ('failed', 'pending') AND i.amount_minor > 0
ORDER BY i.payout_item_id
"""

# The carried-in source for the manifest's item query (one UNION ALL branch, same columns).
CARRIED_UNPAID_SQL = """
        SELECT affiliate_id, currency, 0, 0, amount_minor
        FROM payout_item_carry WHERE into_batch_id = :batch_id"""


def close_unpaid_items(conn: sa.Connection, batch_id: str, period: date, *, now: datetime) -> int:
    """Close earlier batches' unpaid items into `batch_id` (the new month's batch). Idempotent: an item is
    closed once (UNIQUE on the carry record), so rebuilding the draft re-reads the same carries."""
    closed = 0
    for row in conn.execute(text(_UNPAID), {"period": period}).mappings().all():
        why = (f"failed ({row['error_code']})" if row["status"] == "failed"
               else f"held ({row['hold_reason']})" if row["hold_reason"] else "not sent")
        conn.execute(text(
            "INSERT INTO payout_item_carry (payout_item_id, from_batch_id, into_batch_id, affiliate_id, currency, "
            "amount_minor, unpaid_status, reason, carried_at) VALUES (:i, :f, :t, :a, :c, :m, :s, :r, :now)"),
            {"i": row["payout_item_id"], "f": row["batch_id"], "t": batch_id, "a": row["affiliate_id"],
             "c": row["currency"], "m": int(row["amount_minor"]), "s": row["status"],
             "r": f"unpaid in {row['batch_id']}: {why}; carried into {period_key(period)}"[:2000], "now": now})
        # Compare-and-set: a concurrent claim or retry that moved the item first aborts this build.
        moved = conn.execute(text(
            "UPDATE payout_item SET status = 'carried_forward', status_updated_at = :now "
            "WHERE payout_item_id = :i AND status = :s"), {"i": row["payout_item_id"], "s": row["status"], "now": now})
        if moved.rowcount != 1:
            raise UnpaidItemMoved(f"item {row['payout_item_id']} changed while {batch_id} was built; build it again")
        closed += 1
    if closed:
        from sorae_payouts.execution.outcomes import settle_batch_status
        for (old_batch,) in conn.execute(text("SELECT DISTINCT from_batch_id FROM payout_item_carry "
                                               "WHERE into_batch_id = :t"), {"t": batch_id}).all():
            settle_batch_status(conn, old_batch)
    return closed
