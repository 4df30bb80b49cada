"""Item-level outcomes of a batch: what operators see in Dagster and the CLI.

An item's outcome is its status plus its latest attempt (transfer id, error code, unknown reason).
`held` is not a stored status: it is a `pending` item with a hold reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from sorae_payouts.ledger.item_states import HELD, ItemStatus
from sorae_payouts.ledger.sql import text

_ITEM_OUTCOMES = """
SELECT i.payout_item_id, i.affiliate_id, i.currency, i.amount_minor, i.status, i.carry_reason, i.hold_reason,
       i.period_amount_minor, i.carried_in_minor, i.commission_count, i.stripe_account_id, a.attempt_number, a.state,
       a.stripe_transfer_id, a.error_code, a.error_message,
       a.unknown_reason, a.idempotency_key, i.reversed_minor,
       i.reversed_minor - COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                                    WHERE d.payout_item_id = i.payout_item_id), 0) AS reversal_pending_minor
FROM payout_item i
LEFT JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id AND a.attempt_number =
     (SELECT MAX(attempt_number) FROM transfer_attempt x WHERE x.payout_item_id = i.payout_item_id)
WHERE i.batch_id = :b {where}
ORDER BY i.payout_item_id
"""


def display_status(status: str, hold_reason: str | None) -> str:
    return HELD if status == ItemStatus.PENDING and hold_reason else status


def item_outcomes(conn: sa.Connection, batch_id: str, *, payable_only: bool = False) -> Iterator[dict]:
    """Every item with its latest attempt, streamed."""
    where = "AND i.carry_reason IS NULL" if payable_only else ""
    result = conn.execution_options(stream_results=True, yield_per=5_000).execute(
        text(_ITEM_OUTCOMES.format(where=where)), {"b": batch_id}
    )
    for row in result.mappings():
        item = dict(row)
        for key in (
            "payout_item_id",
            "amount_minor",
            "period_amount_minor",
            "carried_in_minor",
            "commission_count",
            "reversed_minor",
            "reversal_pending_minor",
        ):
            item[key] = int(item[key])
        item["outcome"] = display_status(item["status"], item["hold_reason"])
        yield item


@dataclass
class BatchOutcome:
    batch_id: str
    status: str
    # (currency, outcome) -> [count, amount_minor]; outcome in pending/held/processing/posted/failed/blocked/
    # carried_forward/partially_reversed/reversed
    totals: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(v[0] for (c, o), v in self.totals.items() if o == outcome)


def batch_outcome(conn: sa.Connection, batch_id: str) -> BatchOutcome:
    status = conn.execute(text("SELECT status FROM payout_batch WHERE batch_id = :b"), {"b": batch_id}).scalar_one()
    outcome = BatchOutcome(batch_id, status)
    rows = conn.execute(
        text(
            "SELECT currency, status, hold_reason IS NOT NULL AS held, COUNT(*), SUM(amount_minor) FROM payout_item "
            "WHERE batch_id = :b GROUP BY currency, status, hold_reason IS NOT NULL"
        ),
        {"b": batch_id},
    ).all()
    for currency, item_status, held, count, amount in rows:
        key = (currency, HELD if item_status == ItemStatus.PENDING and held else item_status)
        total = outcome.totals.setdefault(key, [0, 0])
        total[0] += int(count)
        total[1] += int(amount)
    return outcome


def exception_counts(conn: sa.Connection, batch_id: str) -> dict[str, int]:
    """Why a batch is `completed_with_exceptions`: payable items per display outcome other than posted."""
    rows = conn.execute(
        text(
            "SELECT status, hold_reason IS NOT NULL, COUNT(*) FROM payout_item WHERE batch_id = :b "
            "AND carry_reason IS NULL AND status <> 'posted' GROUP BY status, hold_reason IS NOT NULL"
        ),
        {"b": batch_id},
    ).all()
    counts: dict[str, int] = {}
    for status, held, n in rows:
        key = display_status(status, "x" if held else None)
        counts[key] = counts.get(key, 0) + int(n)
    return counts
