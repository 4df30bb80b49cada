"""Transfer attempts in the ledger: the state machine around each Stripe call.

    claim (commit)            Stripe call             record (commit)
 item pending ──> attempt processing ──> outcome ──> posted | failed | blocked | stays processing (unknown)

- The claim is a compare-and-set on the item (`pending` -> `processing`, and only while the item has no
  posted attempt) plus the attempt row with its idempotency key derived from business identity
  (`execution.identity`), committed BEFORE Stripe is called. Two runs cannot both claim an item, and an
  item whose status was forced back to `pending` after it was paid is never claimed again.
- An attempt still `processing` (outcome unknown, or a crashed run) is never replaced by a new key: the
  run's group scan looks it up at Stripe first, then it is resumed with the SAME key.
- Outcomes are recorded with a compare-and-set on `state = 'processing'`; terminal attempts are
  immutable (database trigger), so a late duplicate recorder cannot overwrite them, and a partial
  unique index allows at most one posted attempt per item.
- A transfer drawn on a charge (`funding.source_choice`, called inside the claim transaction) stores
  the charge on its attempt (`source_transaction`) before Stripe is called, so a re-sent key carries
  the same charge; when funding cannot pay the item, the claim holds it instead (`Held`).
- Every attempt carries its item's program (`program_id`, checked by a trigger).
- `adopt` records a transfer found at Stripe that this ledger did not send (pending -> processing ->
  posted in one transaction, the attempt posted with a note); `block` parks an item that Stripe says
  is already paid differently (`blocked`, with the reason), closing its open attempt as failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.execution.identity import (
    PaymentIdentity,
    idempotency_key,
    idempotency_key_prefix,
    is_legacy_key,
    key_basis_json,
)
from sorae_payouts.ledger.item_states import AttemptState, ItemStatus
from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.stripe_gateway import Disposition, TransferOutcome, TransferRecord


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
    source_transaction: str | None = None  # the charge the transfer draws on (fixed at claim)
    sources: str | None = None  # JSON: what it pays besides its month (`sources.Sources`, fixed at claim)

    @property
    def legacy(self) -> bool:
        """Claimed before revision 0005: its key (and so its request) keeps the previous format."""
        return is_legacy_key(self.idempotency_key)


def work_items(conn: sa.Connection, batch_id: str) -> list[WorkItem]:
    """Payable items that are not done yet: `pending`, or `processing` with an unresolved attempt."""
    rows = conn.execute(
        text(
            "SELECT payout_item_id, affiliate_id, currency, amount_minor, stripe_account_id, status FROM payout_item "
            "WHERE batch_id = :b AND carry_reason IS NULL AND status IN ('pending', 'processing') "
            "ORDER BY payout_item_id"
        ),
        {"b": batch_id},
    ).all()
    return [WorkItem(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5]) for r in rows]


@dataclass(frozen=True)
class Held:
    """The claim did not take the item: funding cannot pay it now (it stays pending, with the reason)."""

    payout_item_id: int
    reason: str


# (connection of the claim transaction, item) -> (charge id or None, hold reason or None)
SourceChooser = Callable[[sa.Connection, WorkItem], tuple[str | None, str | None]]

_ATTEMPT_COLUMNS = (
    "attempt_pk, payout_item_id, attempt_number, idempotency_key, amount_minor, currency, "
    "destination, created_at, source_transaction, sources"
)
_NO_POSTED_ATTEMPT = "NOT EXISTS (SELECT 1 FROM transfer_attempt p WHERE p.payout_item_id = :i AND p.state = 'posted')"


def _attempt(row, resumed: bool) -> Attempt:
    return Attempt(
        int(row[0]),
        int(row[1]),
        int(row[2]),
        row[3],
        int(row[4]),
        row[5],
        row[6],
        as_utc(row[7]),
        resumed,
        row[8],
        row[9],
    )


def open_attempt(conn: sa.Connection, payout_item_id: int) -> Attempt | None:
    row = conn.execute(
        text(f"SELECT {_ATTEMPT_COLUMNS} FROM transfer_attempt WHERE payout_item_id = :i AND state = 'processing'"),
        {"i": payout_item_id},
    ).first()
    return _attempt(row, resumed=True) if row is not None else None


def _take(conn: sa.Connection, payout_item_id: int, now: datetime) -> bool:
    """pending -> processing, only for an item that has no posted attempt (whatever its status says)."""
    taken = conn.execute(
        text(
            "UPDATE payout_item SET status = 'processing', hold_reason = NULL, status_updated_at = :now "
            f"WHERE payout_item_id = :i AND status = 'pending' AND {_NO_POSTED_ATTEMPT}"
        ),
        {"i": payout_item_id, "now": now},
    )
    return taken.rowcount == 1


def _next_number(conn: sa.Connection, payout_item_id: int) -> int:
    return int(
        conn.execute(
            text("SELECT COALESCE(MAX(attempt_number), 0) + 1 FROM transfer_attempt WHERE payout_item_id = :i"),
            {"i": payout_item_id},
        ).scalar_one()
    )


def claim(
    engine: sa.Engine,
    item: WorkItem,
    *,
    paying_account: str,
    identity: PaymentIdentity,
    now: datetime,
    source: SourceChooser | None = None,
    sources: str | None = None,
) -> Attempt | Held | None:
    """The attempt to send for `item`: its unresolved one, or a new one claimed atomically, drawn on
    the charge `source` chooses (in this transaction, so concurrent claims never overspend a charge).
    `Held` when `source` says funding cannot pay it. None when another run claimed it first, the item
    is no longer pending, or it already has a posted attempt (an item is never paid twice, even if its
    status was edited back to pending)."""
    with engine.begin() as conn:
        if item.status == ItemStatus.PROCESSING:
            return open_attempt(conn, item.payout_item_id)
        charge, hold_reason = source(conn, item) if source else (None, None)
        if hold_reason is not None:
            hold_in(conn, {item.payout_item_id: hold_reason}, now=now)
            return Held(item.payout_item_id, hold_reason)
        # Compare-and-set: of two runs, only the one that flips the item from pending owns it.
        if not _take(conn, item.payout_item_id, now):
            return None
        # The next attempt number and its key, computed in the same statement that stores them.
        row = conn.execute(
            text(
                "INSERT INTO transfer_attempt (payout_item_id, program_id, attempt_number, idempotency_key, state, "
                "amount_minor, currency, destination, source_transaction, created_at, updated_at, key_basis, sources) "
                "SELECT :i, CAST(:p AS VARCHAR(64)), n, CAST(:prefix AS TEXT) || CAST(n AS TEXT), 'processing', :a, "
                ":c, "
                ":d, CAST(:src AS VARCHAR(64)), :now, :now, CAST(:basis AS TEXT), CAST(:sources AS TEXT) FROM "
                "(SELECT COALESCE(MAX(attempt_number), 0) + 1 AS n FROM transfer_attempt WHERE payout_item_id = :i) "
                "nxt "
                f"RETURNING {_ATTEMPT_COLUMNS}"
            ),
            {
                "i": item.payout_item_id,
                "p": identity.program_id,
                "prefix": idempotency_key_prefix(paying_account, identity),
                "a": item.amount_minor,
                "c": item.currency,
                "d": item.destination,
                "src": charge,
                "now": now,
                "basis": key_basis_json(paying_account, identity),
                "sources": sources,
            },
        ).one()
        return _attempt(row, resumed=False)


# disposition -> (attempt state, item status); None keeps the attempt processing.
_TRANSITIONS = {
    Disposition.POSTED: (AttemptState.POSTED, ItemStatus.POSTED),
    Disposition.FAILED: (AttemptState.FAILED, ItemStatus.FAILED),
    Disposition.FAILED_RETRYABLE: (AttemptState.FAILED, ItemStatus.PENDING),
    Disposition.RETRY_SAME_KEY: None,
    Disposition.UNKNOWN: None,
    Disposition.KEY_REFUSED: None,  # the executor resolves it by lookup: `adopt`-like record or `block`
}


def record(
    engine: sa.Engine,
    attempt: Attempt,
    outcome: TransferOutcome,
    *,
    now: datetime,
    unknown_reason: str | None = None,
    note: str | None = None,
) -> bool:
    """Commit the outcome of a Stripe call. Returns False when another recorder got there first."""
    transition = _TRANSITIONS[outcome.disposition]
    error = outcome.error
    with engine.begin() as conn:
        if transition is None:
            reason = unknown_reason or (f"{error.code}: {error.message}" if error else "outcome unknown")
            conn.execute(
                text(
                    "UPDATE transfer_attempt SET unknown_reason = :r, stripe_request_id = "
                    "COALESCE(:rid, stripe_request_id), updated_at = :now "
                    "WHERE attempt_pk = :pk AND state = 'processing'"
                ),
                {"r": reason[:2000], "rid": outcome.request_id, "now": now, "pk": attempt.attempt_pk},
            )
            return True
        state, item_status = transition
        updated = conn.execute(
            text(
                "UPDATE transfer_attempt SET state = :s, stripe_transfer_id = :t, stripe_request_id = :rid, "
                "error_code = :code, error_message = :msg, note = COALESCE(:note, note), updated_at = :now "
                "WHERE attempt_pk = :pk AND state = 'processing'"
            ),
            {
                "s": state,
                "t": outcome.transfer.transfer_id if outcome.transfer else None,
                "rid": outcome.request_id,
                "code": error.code if error else None,
                "msg": error.message[:2000] if error else None,
                "now": now,
                "note": note,
                "pk": attempt.attempt_pk,
            },
        )
        if updated.rowcount != 1:
            return False
        hold = (
            f"{error.code}: will be retried with a new attempt in a later run"
            if item_status == ItemStatus.PENDING and error is not None
            else None
        )
        conn.execute(
            text(
                "UPDATE payout_item SET status = :st, hold_reason = :h, status_updated_at = :now "
                "WHERE payout_item_id = :i"
            ),
            {"st": item_status, "h": hold, "now": now, "i": attempt.payout_item_id},
        )
        return True


def adopt(
    engine: sa.Engine,
    item: WorkItem,
    transfer: TransferRecord,
    *,
    paying_account: str,
    identity: PaymentIdentity,
    note: str,
    now: datetime,
) -> bool:
    """Record `transfer` (found at Stripe, not sent by this ledger) as the item's posted attempt.
    The attempt takes the transfer's own attempt number when it carries a usable one, so a restored
    ledger ends with the same attempt and key the first ledger had. False when the item is not pending."""
    with engine.begin() as conn:
        if not _take(conn, item.payout_item_id, now):
            return False
        number = _next_number(conn, item.payout_item_id)
        theirs = transfer.metadata.get("attempt_number", "")
        if theirs.isdigit() and int(theirs) > number:
            number = int(theirs)
        conn.execute(
            text(
                "INSERT INTO transfer_attempt (payout_item_id, program_id, attempt_number, idempotency_key, state, "
                "amount_minor, currency, destination, stripe_transfer_id, created_at, updated_at, key_basis, note) "
                "VALUES (:i, :p, :n, :k, 'posted', :a, :c, :d, :t, :now, :now, :basis, :note)"
            ),
            {
                "i": item.payout_item_id,
                "p": identity.program_id,
                "n": number,
                "k": idempotency_key(paying_account, identity, number),
                "a": transfer.amount_minor,
                "c": transfer.currency,
                "d": transfer.destination,
                "t": transfer.transfer_id,
                "now": now,
                "basis": key_basis_json(paying_account, identity),
                "note": note[:2000],
            },
        )
        conn.execute(
            text(
                "UPDATE payout_item SET status = 'posted', hold_reason = NULL, status_updated_at = :now "
                "WHERE payout_item_id = :i AND status = 'processing'"
            ),
            {"i": item.payout_item_id, "now": now},
        )
        return True


def block(
    engine: sa.Engine,
    payout_item_id: int,
    reason: str,
    *,
    now: datetime,
    attempt: Attempt | None = None,
    error_code: str = "already_paid_outside_this_ledger",
) -> bool:
    """Park an item for an operator (`blocked`, terminal): Stripe says it is paid, or refused its key,
    in a way this ledger cannot reconcile by itself. Its open attempt, if any, is closed as failed.
    Never followed by a transfer. False when the item was no longer pending/processing."""
    with engine.begin() as conn:
        if attempt is not None:
            conn.execute(
                text(
                    "UPDATE transfer_attempt SET state = 'failed', error_code = :code, error_message = :r, "
                    "updated_at = :now WHERE attempt_pk = :pk AND state = 'processing'"
                ),
                {"code": error_code, "r": reason[:2000], "now": now, "pk": attempt.attempt_pk},
            )
        moved = conn.execute(
            text(
                "UPDATE payout_item SET status = 'blocked', hold_reason = :r, status_updated_at = :now "
                "WHERE payout_item_id = :i AND status IN ('pending', 'processing')"
            ),
            {"r": reason[:2000], "now": now, "i": payout_item_id},
        )
        return moved.rowcount == 1


def hold(engine: sa.Engine, holds: dict[int, str], *, now: datetime) -> None:
    """Record why pending items are not sent this run (they stay pending)."""
    if not holds:
        return
    with engine.begin() as conn:
        hold_in(conn, holds, now=now)


def hold_in(conn: sa.Connection, holds: dict[int, str], *, now: datetime) -> None:
    """`hold` inside the caller's transaction."""
    conn.execute(
        text(
            "UPDATE payout_item SET hold_reason = :h, status_updated_at = :now "
            "WHERE payout_item_id = :i AND status = 'pending'"
        ),
        [{"h": reason, "now": now, "i": item_id} for item_id, reason in holds.items()],
    )
