"""Retrying failed items in isolation.

A chosen `failed` item goes back to `pending`; the next execution claims it with a NEW attempt and
therefore a new idempotency key (the failed attempt stays as it was, immutable). Only those items are
then executed. Refused, with the reason: an item that is posted (never paid twice), processing (its
outcome is unknown: refresh resolves it, a new key could pay twice), already pending, or not payable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.batches import load_batch
from sorae_payouts.execution.attempts import idempotency_key, ledger_id
from sorae_payouts.execution.executor import ExecutionReport, ExecutionSettings, execute_batch
from sorae_payouts.execution.outcomes import item_outcomes
from sorae_payouts.ledger.sql import text
from sorae_payouts.stripe_gateway import StripeGateway

_REFUSALS = {
    "posted": "already paid (transfer {transfer}); an item is never paid twice",
    "processing": "outcome of attempt {attempt} is unknown: run `refresh` to resolve it, never a new key",
    "pending": "already pending: the next execution sends it",
    "carried_forward": "not payable in this batch ({carry}): its balance carries forward",
    "partially_reversed": "paid (transfer {transfer}), then partly reversed at Stripe: decide the reversed amount "
                          "with `reversals resolve --owe-again|--write-off`, never a retry",
    "reversed": "paid (transfer {transfer}), then reversed at Stripe: decide the reversed amount with "
                "`reversals resolve --owe-again|--write-off`, never a retry",
}


@dataclass
class RetryPlan:
    period: date
    batch_id: str
    retry: list[dict] = field(default_factory=list)  # item + the transfer that would be sent
    refused: list[dict] = field(default_factory=list)  # item id + reason


def plan_retry(conn: sa.Connection, period: date, *, item_ids: list[int] | None = None,
               error_code: str | None = None) -> RetryPlan:
    """Which failed items would be retried, with the exact transfer each would send; refusals explained.
    With neither `item_ids` nor `error_code`, every failed item of the batch is chosen."""
    batch = load_batch(conn, period)
    if batch.status == "draft":
        raise ValueError(f"batch {batch.batch_id} is a draft: nothing was executed, nothing to retry")
    identity = ledger_id(conn)
    plan = RetryPlan(period, batch.batch_id)
    wanted = set(item_ids or [])
    seen = set()
    for item in item_outcomes(conn, batch.batch_id):
        chosen = (item["payout_item_id"] in wanted) if wanted else (
            item["status"] == "failed" and (error_code is None or item["error_code"] == error_code))
        if wanted and error_code and item["error_code"] != error_code:
            chosen = False
        if not chosen:
            continue
        seen.add(item["payout_item_id"])
        if item["status"] != "failed":
            reason = _REFUSALS[item["status"]].format(transfer=item["stripe_transfer_id"], attempt=item["attempt_number"],
                                                      carry=item["carry_reason"])
            plan.refused.append({"payout_item_id": item["payout_item_id"], "affiliate_id": item["affiliate_id"],
                                 "reason": reason})
            continue
        next_attempt = int(item["attempt_number"] or 0) + 1
        plan.retry.append({**item, "next_attempt": next_attempt,
                           "next_idempotency_key": idempotency_key(identity, item["payout_item_id"], next_attempt)})
    for missing in sorted(wanted - seen):
        plan.refused.append({"payout_item_id": missing, "affiliate_id": None,
                             "reason": f"not an item of batch {batch.batch_id}" if not error_code else
                             f"last error is not {error_code}"})
    return plan


def apply_retry(engine: sa.Engine, plan: RetryPlan, *, now: datetime) -> list[int]:
    """Put the planned items back to pending (compare-and-set on `failed`). Returns the item ids moved."""
    moved = []
    with engine.begin() as conn:
        for item in plan.retry:
            updated = conn.execute(text(
                "UPDATE payout_item SET status = 'pending', hold_reason = NULL, status_updated_at = :now "
                "WHERE payout_item_id = :i AND status = 'failed'"), {"now": now, "i": item["payout_item_id"]})
            if updated.rowcount == 1:
                moved.append(item["payout_item_id"])
        if moved:  # a completed batch has work again
            conn.execute(text("UPDATE payout_batch SET status = 'partially_completed' WHERE batch_id = :b "
                              "AND status = 'completed'"), {"b": plan.batch_id})
    return moved


def execute_retry(engine: sa.Engine, gateway: StripeGateway, plan: RetryPlan, *, now: datetime,
                  settings: ExecutionSettings | None = None) -> ExecutionReport:
    """Apply the plan, then send only the items it moved back to pending (each with a new attempt).
    Raises `ExecutionRefused` (nothing sent, items stay pending) like any execution."""
    moved = set(apply_retry(engine, plan, now=now))
    return execute_batch(engine, gateway, plan.period, settings=settings, only=lambda i: i.payout_item_id in moved)
