"""Transfer attempts in the ledger: the state machine around each Stripe call.

    claim (commit)            Stripe call             record (commit)
 item pending ──> attempt processing ──> outcome ──> posted | failed | stays processing (unknown)

- The claim is a compare-and-set on the item (`pending` -> `processing`) plus the attempt row with its
  deterministic idempotency key, committed BEFORE Stripe is called. Two runs cannot both claim an item.
- An attempt still `processing` (outcome unknown, or a crashed run) is never replaced by a new key: it
  is resumed with the SAME key, or resolved by looking the transfer up in Stripe.
- Outcomes are recorded with a compare-and-set on `state = 'processing'`; terminal attempts are
  immutable (database trigger), so a late duplicate recorder cannot overwrite them, and a partial
  unique index allows at most one posted attempt per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.stripe_gateway import Disposition, TransferOutcome


@dataclass(frozen=True)
class WorkItem:
    payout_item_id: int
    affiliate_id: str
    currency: str
    amount_minor: int
    destination: str
    status: str  # pending | processing


@dataclass(frozen=True)
class Attempt:
    attempt_pk: int
    payout_item_id: int
    attempt_number: int
    idempotency_key: str
    amount_minor: int
    currency: str
    destination: str
    created_at: datetime
    resumed: bool  # created by an earlier run, outcome not known


def ledger_id(conn: sa.Connection) -> str:
    return conn.execute(text("SELECT ledger_id FROM ledger_meta WHERE singleton = 1")).scalar_one()


def idempotency_key(ledger: str, payout_item_id: int, attempt_number: int) -> str:
    """Deterministic: the same item and attempt always send the same key, from any process."""
    return f"sorae-{ledger}-item-{payout_item_id}-attempt-{attempt_number}"


def work_items(conn: sa.Connection, batch_id: str) -> list[WorkItem]:
    """Payable items that are not done yet: `pending`, or `processing` with an unresolved attempt."""
    rows = conn.execute(text(
        "SELECT payout_item_id, affiliate_id, currency, amount_minor, stripe_account_id, status FROM payout_item "
        "WHERE batch_id = :b AND carry_reason IS NULL AND status IN ('pending', 'processing') "
        "ORDER BY payout_item_id"), {"b": batch_id}).all()
    return [WorkItem(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5]) for r in rows]


_ATTEMPT_COLUMNS = ("attempt_pk, payout_item_id, attempt_number, idempotency_key, amount_minor, currency, "
                    "destination, created_at")


def _attempt(row, resumed: bool) -> Attempt:
    return Attempt(int(row[0]), int(row[1]), int(row[2]), row[3], int(row[4]), row[5], row[6], as_utc(row[7]), resumed)


def claim(engine: sa.Engine, item: WorkItem, *, ledger: str, now: datetime) -> Attempt | None:
    """The attempt to send for `item`: its unresolved one, or a new one claimed atomically.
    None when another run claimed it first or the item is no longer pending."""
    with engine.begin() as conn:
        if item.status == "processing":
            open_attempt = conn.execute(text(
                f"SELECT {_ATTEMPT_COLUMNS} FROM transfer_attempt WHERE payout_item_id = :i AND state = 'processing'"),
                {"i": item.payout_item_id}).first()
            return _attempt(open_attempt, resumed=True) if open_attempt is not None else None
        # Compare-and-set: of two runs, only the one that flips the item from pending owns it.
        taken = conn.execute(text(
            "UPDATE payout_item SET status = 'processing', hold_reason = NULL, status_updated_at = :now "
            "WHERE payout_item_id = :i AND status = 'pending'"), {"i": item.payout_item_id, "now": now})
        if taken.rowcount != 1:
            return None
        # The next attempt number and its key, computed in the same statement that stores them.
        row = conn.execute(text(
            "INSERT INTO transfer_attempt (payout_item_id, attempt_number, idempotency_key, state, amount_minor, "
            "currency, destination, created_at, updated_at) "
            "SELECT :i, n, CAST(:prefix AS TEXT) || CAST(n AS TEXT), 'processing', :a, :c, :d, :now, :now FROM "
            "(SELECT COALESCE(MAX(attempt_number), 0) + 1 AS n FROM transfer_attempt WHERE payout_item_id = :i) nxt "
            f"RETURNING {_ATTEMPT_COLUMNS}"),
            {"i": item.payout_item_id, "prefix": idempotency_key(ledger, item.payout_item_id, 0)[:-1],
             "a": item.amount_minor, "c": item.currency, "d": item.destination, "now": now}).one()
        return _attempt(row, resumed=False)


# disposition -> (attempt state, item status); None keeps the attempt processing.
_TRANSITIONS = {
    Disposition.POSTED: ("posted", "posted"),
    Disposition.FAILED: ("failed", "failed"),
    Disposition.FAILED_RETRYABLE: ("failed", "pending"),
    Disposition.RETRY_SAME_KEY: None,
    Disposition.UNKNOWN: None,
}


def record(engine: sa.Engine, attempt: Attempt, outcome: TransferOutcome, *, now: datetime,
           unknown_reason: str | None = None) -> bool:
    """Commit the outcome of a Stripe call. Returns False when another recorder got there first."""
    transition = _TRANSITIONS[outcome.disposition]
    error = outcome.error
    with engine.begin() as conn:
        if transition is None:
            reason = unknown_reason or (f"{error.code}: {error.message}" if error else "outcome unknown")
            conn.execute(text("UPDATE transfer_attempt SET unknown_reason = :r, stripe_request_id = "
                              "COALESCE(:rid, stripe_request_id), updated_at = :now "
                              "WHERE attempt_pk = :pk AND state = 'processing'"),
                         {"r": reason[:2000], "rid": outcome.request_id, "now": now, "pk": attempt.attempt_pk})
            return True
        state, item_status = transition
        updated = conn.execute(text(
            "UPDATE transfer_attempt SET state = :s, stripe_transfer_id = :t, stripe_request_id = :rid, "
            "error_code = :code, error_message = :msg, updated_at = :now WHERE attempt_pk = :pk AND state = 'processing'"),
            {"s": state, "t": outcome.transfer.transfer_id if outcome.transfer else None, "rid": outcome.request_id,
             "code": error.code if error else None, "msg": error.message[:2000] if error else None, "now": now,
             "pk": attempt.attempt_pk})
        if updated.rowcount != 1:
            return False
        hold = f"{error.code}: will be retried with a new attempt in a later run" if item_status == "pending" else None
        conn.execute(text("UPDATE payout_item SET status = :st, hold_reason = :h, status_updated_at = :now "
                          "WHERE payout_item_id = :i"),
                     {"st": item_status, "h": hold, "now": now, "i": attempt.payout_item_id})
        return True


def hold(engine: sa.Engine, holds: dict[int, str], *, now: datetime) -> None:
    """Record why pending items are not sent this run (they stay pending)."""
    if not holds:
        return
    with engine.begin() as conn:
        conn.execute(text("UPDATE payout_item SET hold_reason = :h, status_updated_at = :now "
                          "WHERE payout_item_id = :i AND status = 'pending'"),
                     [{"h": reason, "now": now, "i": item_id} for item_id, reason in holds.items()])
