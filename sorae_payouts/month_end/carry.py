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

Programs: an unpaid item is carried into the next batch of its own program only. The manifest build
closes the unpaid items of a whole set of programs in a fixed number of statements.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.core.periods import period_key
from sorae_payouts.ledger.sql import set_text
from sorae_payouts.month_end.batches import settle_batch_status
from sorae_payouts.month_end.program_sets import ProgramRefused

# Batches whose runs are over: what is unpaid there will not be sent by a run any more.
SETTLED_BATCH_STATUSES = ("partially_completed", "completed_with_exceptions", "completed")

# Every unpaid item of the programs' earlier settled batches, recorded as carried into the program's
# batch of the month (`nb`), with the reason in words (failed with its latest error code, held, or
# not sent).
_CARRY_UNPAID = """
INSERT INTO payout_item_carry (payout_item_id, from_batch_id, into_batch_id, affiliate_id, currency, amount_minor,
                               unpaid_status, reason, carried_at)
SELECT i.payout_item_id, i.batch_id, nb.batch_id, i.affiliate_id, i.currency, i.amount_minor, i.status,
       SUBSTR('unpaid in ' || i.batch_id || ': ' || CASE
           WHEN i.status = 'failed' THEN 'failed (' || COALESCE((SELECT a.error_code FROM transfer_attempt a
                WHERE a.payout_item_id = i.payout_item_id ORDER BY a.attempt_number DESC LIMIT 1), 'None') || ')'
           WHEN COALESCE(i.hold_reason, '') <> '' THEN 'held (' || i.hold_reason || ')'
           ELSE 'not sent' END || '; carried into ' || :period_name, 1, 2000),
       :now
FROM payout_batch nb
JOIN payout_batch b ON b.program_id = nb.program_id AND b.period < nb.period
JOIN payout_item i ON i.batch_id = b.batch_id
WHERE nb.batch_id IN :batch_ids
  AND b.status IN ('partially_completed', 'completed_with_exceptions', 'completed')
  AND i.carry_reason IS NULL AND i.status IN ('failed', 'pending') AND i.amount_minor > 0
RETURNING payout_item_id, unpaid_status, from_batch_id
"""

# Compare-and-set: only items still in the status their carry recorded are closed; a concurrent claim
# or retry that moved one first is found by the count.
_CLOSE = """
UPDATE payout_item SET status = 'carried_forward', status_updated_at = :now
WHERE status = :s AND payout_item_id IN (SELECT c.payout_item_id FROM payout_item_carry c
                                         WHERE c.into_batch_id IN :batch_ids AND c.unpaid_status = :s)
"""

# The carried-in source for the manifest's item query (one UNION ALL branch: program, affiliate,
# currency, earned, carried).
CARRIED_UNPAID_SQL = """
        SELECT b.program_id, c.affiliate_id, c.currency, 0, c.amount_minor
        FROM payout_item_carry c JOIN payout_batch b ON b.batch_id = c.into_batch_id
        WHERE c.into_batch_id IN :batch_ids"""


def close_unpaid_items_into(conn: sa.Connection, period: date, batch_ids: Mapping[str, str], *, now: datetime) -> int:
    """Close the unpaid items of earlier batches of each program into its month's batch (program id ->
    draft batch id of `period`). Idempotent: an item is closed once (UNIQUE on the carry record), so
    rebuilding a draft re-reads the same carries. Raises ProgramRefused for programs one of whose
    items moved meanwhile (the caller builds the others again without them)."""
    if not batch_ids:
        return 0
    ids = sorted(batch_ids.values())
    carried = conn.execute(
        set_text(_CARRY_UNPAID), {"batch_ids": ids, "period_name": period_key(period), "now": now}
    ).all()
    if not carried:
        return 0
    for status in sorted({row.unpaid_status for row in carried}):
        expected = sum(1 for row in carried if row.unpaid_status == status)
        moved = conn.execute(set_text(_CLOSE), {"batch_ids": ids, "s": status, "now": now}).rowcount
        if moved != expected:
            raise ProgramRefused(_moved_items(conn, ids))
    for old_batch in sorted({row.from_batch_id for row in carried}):
        settle_batch_status(conn, old_batch)
    return len(carried)


def _moved_items(conn: sa.Connection, batch_ids: list[str]) -> dict[str, str]:
    rows = conn.execute(
        set_text(
            "SELECT nb.program_id, nb.batch_id, MIN(c.payout_item_id) FROM payout_item_carry c "
            "JOIN payout_item i ON i.payout_item_id = c.payout_item_id JOIN payout_batch nb ON nb.batch_id = "
            "c.into_batch_id "
            "WHERE c.into_batch_id IN :batch_ids AND i.status <> 'carried_forward' GROUP BY nb.program_id, nb.batch_id"
        ),
        {"batch_ids": batch_ids},
    ).all()
    return {p: f"item {item} changed while {b} was built; build it again" for p, b, item in rows}
