"""Retrying failed items in isolation.

A chosen `failed` item goes back to `pending` together with an appended `payout_item_retry` record
(who asked, why, for which attempt: the database refuses failed -> pending without it); the next
execution claims it with a NEW attempt and therefore a new idempotency key (the failed attempt stays as
it was, immutable). Only those items are then executed. Refused, with the reason: an item that is
posted (never paid twice), processing (its outcome is unknown: refresh resolves it, a new key could pay
twice), already pending, or not payable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.core.periods import period_key
from sorae_payouts.execution.identity import PaymentIdentity, idempotency_key
from sorae_payouts.execution.outcomes import item_outcomes
from sorae_payouts.execution.pay_batch import ExecutionRefused, ExecutionReport, ExecutionSettings, execute_batch
from sorae_payouts.execution.preflight import disabled_program
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.ledger.sql import text
from sorae_payouts.month_end.batches import load_batch
from sorae_payouts.registry.paying_accounts import require_live_payouts_allowed_for
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, get_program
from sorae_payouts.stripe_gateway import LivePayoutsRefused, StripeGateway

_REFUSALS = {
    ItemStatus.POSTED: "already paid (transfer {transfer}); an item is never paid twice",
    ItemStatus.PROCESSING: "outcome of attempt {attempt} is unknown: run `refresh` to resolve it, never a new key",
    ItemStatus.PENDING: "already pending: the next execution sends it",
    ItemStatus.CARRIED_FORWARD: "not payable in this batch ({carry}): its balance carries forward",
    ItemStatus.BLOCKED: "blocked ({hold}): an operator must resolve it first",
    ItemStatus.PARTIALLY_REVERSED: "paid (transfer {transfer}), then partly reversed at Stripe: decide the reversed "
    "amount with `reversals resolve --owe-again|--write-off`, never a retry",
    ItemStatus.REVERSED: "paid (transfer {transfer}), then reversed at Stripe: decide the reversed amount with "
    "`reversals resolve --owe-again|--write-off`, never a retry",
}


@dataclass
class RetryPlan:
    period: date
    batch_id: str
    retry: list[dict] = field(default_factory=list)  # item + the transfer that would be sent
    refused: list[dict] = field(default_factory=list)  # item id + reason
    program_id: str = DEFAULT_PROGRAM


def plan_retry(
    conn: sa.Connection,
    period: date,
    *,
    program_id: str = DEFAULT_PROGRAM,
    item_ids: list[int] | None = None,
    error_code: str | None = None,
    paying_account: str | None = None,
) -> RetryPlan:
    """Which failed items of the program's batch would be retried, with the exact transfer each would
    send; refusals explained. With neither `item_ids` nor `error_code`, every failed item of the batch
    is chosen. The next key is shown for `paying_account` (the Stripe account that pays the program;
    a placeholder without it)."""
    batch = load_batch(conn, period, program_id=program_id)
    if batch.status == "draft":
        raise ValueError(f"batch {batch.batch_id} is a draft: nothing was executed, nothing to retry")
    account = paying_account or "<paying account>"
    plan = RetryPlan(period, batch.batch_id, program_id=program_id)
    wanted = set(item_ids or [])
    seen = set()
    for item in item_outcomes(conn, batch.batch_id):
        chosen = (
            (item["payout_item_id"] in wanted)
            if wanted
            else (item["status"] == ItemStatus.FAILED and (error_code is None or item["error_code"] == error_code))
        )
        if wanted and error_code and item["error_code"] != error_code:
            chosen = False
        if not chosen:
            continue
        seen.add(item["payout_item_id"])
        if item["status"] != ItemStatus.FAILED:
            reason = _REFUSALS.get(item["status"], "status {status}: nothing to retry").format(
                transfer=item["stripe_transfer_id"],
                attempt=item["attempt_number"],
                hold=item["hold_reason"],
                carry=item["carry_reason"] or carried_into(conn, item["payout_item_id"]),
                status=item["status"],
            )
            plan.refused.append(
                {"payout_item_id": item["payout_item_id"], "affiliate_id": item["affiliate_id"], "reason": reason}
            )
            continue
        next_attempt = int(item["attempt_number"] or 0) + 1
        plan.retry.append(
            {
                **item,
                "next_attempt": next_attempt,
                "next_idempotency_key": idempotency_key(
                    account,
                    PaymentIdentity(program_id, period_key(batch.period), item["affiliate_id"], item["currency"]),
                    next_attempt,
                ),
            }
        )
    for missing in sorted(wanted - seen):
        plan.refused.append(
            {
                "payout_item_id": missing,
                "affiliate_id": None,
                "reason": f"not an item of batch {batch.batch_id}"
                if not error_code
                else f"last error is not {error_code}",
            }
        )
    return plan


def carried_into(conn: sa.Connection, payout_item_id: int) -> str:
    """Where an unpaid item's amount went when it was closed at a later month-end."""
    row = conn.execute(
        text(
            "SELECT c.into_batch_id, n.payout_item_id FROM payout_item_carry c LEFT JOIN payout_item n ON "
            "n.batch_id = c.into_batch_id AND n.affiliate_id = c.affiliate_id AND n.currency = c.currency "
            "WHERE c.payout_item_id = :i"
        ),
        {"i": payout_item_id},
    ).first()
    if row is None:
        return "carried"
    return f"unpaid, carried into {row[0]}" + (f" by item {row[1]}, which pays it" if row[1] else "")


def reopen_failed(
    conn: sa.Connection, item_ids: list[int], *, requested_by: str, reason: str, now: datetime
) -> list[int]:
    """failed -> pending with the retry record the database requires, for each item's latest attempt
    (compare-and-set on `failed`: an item that moved meanwhile is left alone). Returns the ids moved."""
    moved = []
    for item_id in item_ids:
        latest = conn.execute(
            text("SELECT MAX(attempt_number) FROM transfer_attempt WHERE payout_item_id = :i"), {"i": item_id}
        ).scalar_one()
        if (
            latest is None
            or conn.execute(
                text("SELECT status FROM payout_item WHERE payout_item_id = :i"), {"i": item_id}
            ).scalar_one()
            != ItemStatus.FAILED
        ):
            continue
        conn.execute(
            text(
                "INSERT INTO payout_item_retry (payout_item_id, for_attempt_number, requested_by, reason, "
                "requested_at) VALUES (:i, :n, :by, :r, :now)"
            ),
            {"i": item_id, "n": int(latest), "by": requested_by, "r": reason[:2000], "now": now},
        )
        updated = conn.execute(
            text(
                "UPDATE payout_item SET status = 'pending', hold_reason = NULL, status_updated_at = :now "
                "WHERE payout_item_id = :i AND status = 'failed'"
            ),
            {"now": now, "i": item_id},
        )
        if updated.rowcount == 1:
            moved.append(item_id)
    if moved:  # a settled batch has work again
        conn.execute(
            text(
                "UPDATE payout_batch SET status = 'partially_completed' WHERE batch_id = "
                "(SELECT batch_id FROM payout_item WHERE payout_item_id = :i) "
                "AND status IN ('completed', 'completed_with_exceptions')"
            ),
            {"i": moved[0]},
        )
    return moved


def apply_retry(
    engine: sa.Engine, plan: RetryPlan, *, now: datetime, requested_by: str = "operator", reason: str = "operator retry"
) -> list[int]:
    """Put the planned items back to pending, each with its retry record. Returns the item ids moved."""
    with engine.begin() as conn:
        return reopen_failed(
            conn, [i["payout_item_id"] for i in plan.retry], requested_by=requested_by, reason=reason, now=now
        )


def execute_retry(
    engine: sa.Engine,
    gateway: StripeGateway,
    plan: RetryPlan,
    *,
    now: datetime,
    settings: ExecutionSettings | None = None,
    announce=None,
    requested_by: str = "operator",
) -> ExecutionReport:
    """Apply the plan, then send only the items it moved back to pending (each with a new attempt),
    through `gateway` (the plan's program's paying account). Raises `ExecutionRefused` (nothing sent,
    items stay pending) like any execution; a live key without SORAE_LIVE_PAYOUTS=1 is refused before
    any item moves."""
    with engine.connect() as conn:
        program = get_program(conn, plan.program_id)
    if program.status != "active":  # before any item moves, as execution would refuse to send them
        raise disabled_program(program.program_id, "nothing is retried")
    try:
        require_live_payouts_allowed_for(program, gateway)
    except LivePayoutsRefused as exc:
        raise ExecutionRefused(str(exc)) from exc
    moved = set(apply_retry(engine, plan, now=now, requested_by=requested_by))
    return execute_batch(
        engine,
        gateway,
        plan.period,
        program_id=plan.program_id,
        settings=settings,
        only=lambda i: i.payout_item_id in moved,
        announce=announce,
    )
