"""Payout status refresh: what changed in Stripe since a program's batch was executed.

Everything goes through the program's paying account (its gateway) and its transfer group.
1. Attempts still `processing` (outcome unknown) are resolved exactly as execution does: the batch's
   transfer group is looked up at Stripe first (whatever the attempt's age), and only an attempt
   with no transfer there has its SAME key re-sent. Never a new key.
2. Posted transfers' reversal state (`reversed`, `amount_reversed`) is appended to
   `transfer_status_event` when it differs from the last record, and the item takes the reversed
   amount and status (`partially_reversed` / `reversed`) in the same transaction
   (`operations.reversals.record_reversal`); the amount then waits for an operator's decision.
3. Connected accounts of held items are checked; a readiness change is appended to
   `account_status_event`, and an item whose account became ready loses its hold.
4. What was held or failed for a reason that has cleared is paid now, without a person
   (`operations.reattempt`): released holds, and failures a fix of the affiliate's account clears.
Nothing is overwritten: every change is a new row with its timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.aftercare.pay_cleared import reattempt_cleared
from sorae_payouts.aftercare.reversals import ReversalState, record_reversal
from sorae_payouts.execution.identity import transfer_group
from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch, utcnow
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.ledger.sql import text
from sorae_payouts.month_end.batches import list_batches, load_batch
from sorae_payouts.registry.paying_accounts import require_program_gateway
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, get_program
from sorae_payouts.stripe_gateway import StripeGateway


@dataclass
class RefreshReport:
    batch_id: str
    resolved: int = 0
    still_unknown: int = 0
    reversal_changes: list[dict] = field(default_factory=list)
    account_changes: list[dict] = field(default_factory=list)
    released_holds: int = 0
    reattempted: int = 0  # items sent again because their cause cleared (released holds, fixed accounts)
    reattempt_posted: int = 0

    def as_json(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "resolved": self.resolved,
            "still_unknown": self.still_unknown,
            "reversal_changes": len(self.reversal_changes),
            "account_changes": len(self.account_changes),
            "released_holds": self.released_holds,
            "reattempted": self.reattempted,
            "reattempt_posted": self.reattempt_posted,
        }


def refreshable_periods(
    conn: sa.Connection, period: date | None = None, *, program_id: str = DEFAULT_PROGRAM
) -> list[date]:
    """The given period, or every batch of the program that has left draft (only executed batches can
    change in Stripe)."""
    if period:
        return [period]
    return [b.period for b in list_batches(conn) if b.program_id == program_id and b.status != "draft"]


def refresh_batch(
    engine: sa.Engine,
    gateway: StripeGateway,
    period: date,
    *,
    program_id: str = DEFAULT_PROGRAM,
    now: datetime | None = None,
    settings: ExecutionSettings | None = None,
    announce=None,
) -> RefreshReport:
    """Refresh the program's batch of `period` through `gateway`, its paying account's."""
    now = now or utcnow()
    with engine.connect() as conn:
        program = get_program(conn, program_id)
        require_program_gateway(program, gateway)
        batch = load_batch(conn, period, program_id=program_id)
    report = RefreshReport(batch.batch_id)
    if batch.status == "draft":
        return report
    with engine.connect() as conn:
        unknown_before = _processing(conn, batch.batch_id)
    if unknown_before:
        execute_batch(
            engine,
            gateway,
            period,
            program_id=program_id,
            settings=settings,
            only=lambda item: item.status == ItemStatus.PROCESSING,
            announce=announce,
        )
    with engine.connect() as conn:
        report.still_unknown = _processing(conn, batch.batch_id)
    report.resolved = unknown_before - report.still_unknown
    report.reversal_changes = _refresh_reversals(
        engine, gateway, batch.batch_id, transfer_group(batch.period, program_id), now
    )
    report.account_changes, released = _refresh_accounts(engine, gateway, batch.batch_id, now)
    report.released_holds = len(released)
    if program.status != "active":  # released and reopened items wait, pending, for the program's return
        return report
    report.reattempted, report.reattempt_posted = reattempt_cleared(
        engine, gateway, batch.batch_id, period, released=released, now=now, settings=settings, program_id=program_id
    )
    return report


def _processing(conn: sa.Connection, batch_id: str) -> int:
    return conn.execute(
        text(
            "SELECT COUNT(*) FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = "
            "a.payout_item_id WHERE i.batch_id = :b AND a.state = 'processing'"
        ),
        {"b": batch_id},
    ).scalar_one()


_POSTED_ATTEMPTS = """
SELECT a.attempt_pk, a.payout_item_id, a.stripe_transfer_id,
       (SELECT e.reversed FROM transfer_status_event e WHERE e.attempt_pk = a.attempt_pk
        ORDER BY e.event_pk DESC LIMIT 1) AS reversed,
       (SELECT e.amount_reversed_minor FROM transfer_status_event e WHERE e.attempt_pk = a.attempt_pk
        ORDER BY e.event_pk DESC LIMIT 1) AS amount_reversed
FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id
WHERE i.batch_id = :b AND a.state = 'posted'
"""


def _refresh_reversals(
    engine: sa.Engine, gateway: StripeGateway, batch_id: str, group: str, now: datetime
) -> list[dict]:
    with engine.connect() as conn:
        known = {r.stripe_transfer_id: r for r in conn.execute(text(_POSTED_ATTEMPTS), {"b": batch_id})}
    changes = []
    for transfer in gateway.transfers(group):
        last = known.get(transfer.transfer_id)
        if last is None:
            continue  # not ours or not posted: reconciliation reports it
        previous = (bool(last.reversed or False), int(last.amount_reversed or 0))
        if previous != (transfer.reversed, transfer.amount_reversed):
            changes.append(
                ReversalState(
                    int(last.attempt_pk),
                    int(last.payout_item_id),
                    transfer.transfer_id,
                    transfer.reversed,
                    transfer.amount_reversed,
                )
            )
    if changes:
        with engine.begin() as conn:  # the event and the item's new state together, or neither
            changes = [c for c in changes if record_reversal(conn, c, now)]
    return [
        {
            "attempt_pk": c.attempt_pk,
            "payout_item_id": c.payout_item_id,
            "stripe_transfer_id": c.stripe_transfer_id,
            "reversed": c.reversed,
            "amount_reversed_minor": c.amount_reversed_minor,
            "recorded_at": now,
        }
        for c in changes
    ]


# Holds about the account's readiness only: a `shared_destination` or `insufficient_program_funds`
# hold does not depend on the account, and releasing it here would only show a release that the next
# pre-flight or claim takes back.
_HELD = """
SELECT i.payout_item_id, i.stripe_account_id FROM payout_item i
WHERE i.batch_id = :b AND i.status = 'pending' AND i.hold_reason IS NOT NULL
  AND i.hold_reason NOT LIKE 'shared_destination:%' AND i.hold_reason NOT LIKE 'insufficient_program_funds:%'
"""
_LATEST_ACCOUNT = """
SELECT exists_in_stripe, transfers_capability, payouts_enabled FROM account_status_event
WHERE stripe_account_id = :a ORDER BY event_pk DESC LIMIT 1
"""


def _refresh_accounts(
    engine: sa.Engine, gateway: StripeGateway, batch_id: str, now: datetime
) -> tuple[list[dict], list[int]]:
    with engine.connect() as conn:
        held = conn.execute(text(_HELD), {"b": batch_id}).all()
    changes, released = [], []
    for account_id in sorted({a for _, a in held}):
        readiness = gateway.account_readiness(account_id)
        state = (readiness.exists, readiness.transfers_capability, readiness.payouts_enabled)
        with engine.connect() as conn:
            last = conn.execute(text(_LATEST_ACCOUNT), {"a": account_id}).first()
        if last is None or (bool(last[0]), last[1], bool(last[2])) != state:
            changes.append(
                {
                    "stripe_account_id": account_id,
                    "exists_in_stripe": readiness.exists,
                    "transfers_capability": readiness.transfers_capability,
                    "payouts_enabled": readiness.payouts_enabled,
                    "disabled_reason": readiness.disabled_reason,
                }
            )
        if readiness.ready:
            released += [item_id for item_id, a in held if a == account_id]
    with engine.begin() as conn:
        if changes:
            conn.execute(
                text(
                    "INSERT INTO account_status_event (stripe_account_id, exists_in_stripe, "
                    "transfers_capability, payouts_enabled, disabled_reason, recorded_at) VALUES "
                    "(:stripe_account_id, :exists_in_stripe, :transfers_capability, :payouts_enabled, "
                    ":disabled_reason, :now)"
                ),
                [{**c, "now": now} for c in changes],
            )
        if released:
            conn.execute(
                text(
                    "UPDATE payout_item SET hold_reason = NULL, status_updated_at = :now "
                    "WHERE payout_item_id = :i AND status = 'pending'"
                ),
                [{"i": i, "now": now} for i in released],
            )
    return changes, released
