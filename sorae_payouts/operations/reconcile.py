"""Reconciliation: the batch's transfers in Stripe against the ledger's posted attempts.

Same transfer ids, same amounts, currencies and destinations, same count, and nothing in Stripe's
transfer group that the ledger does not know. Any difference is drift, reported row by row.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from sorae_payouts.audit import AuditResult
from sorae_payouts.batches import load_batch
from sorae_payouts.ledger.sql import text
from sorae_payouts.stripe_gateway import StripeGateway

_POSTED = """
SELECT a.stripe_transfer_id, a.payout_item_id, a.amount_minor, a.currency, a.destination
FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id
WHERE i.batch_id = :b AND a.state = 'posted'
"""


def reconcile_batch(conn: sa.Connection, gateway: StripeGateway, period: date) -> AuditResult:
    batch = load_batch(conn, period)
    ledger = {r[0]: r for r in conn.execute(text(_POSTED), {"b": batch.batch_id})}
    stripe = {t.transfer_id: t for t in gateway.transfers(batch.batch_id)}
    drift = []
    for transfer_id, (_, item_id, amount, currency, destination) in sorted(ledger.items()):
        t = stripe.get(transfer_id)
        if t is None:
            drift.append(_row("missing_in_stripe", transfer_id, item_id, f"{amount} {currency} -> {destination}", ""))
        elif (t.amount_minor, t.currency, t.destination) != (amount, currency, destination):
            drift.append(_row("mismatch", transfer_id, item_id, f"{amount} {currency} -> {destination}",
                              f"{t.amount_minor} {t.currency} -> {t.destination}"))
    for transfer_id, t in sorted(stripe.items()):
        if transfer_id not in ledger:
            drift.append(_row("unknown_to_ledger", transfer_id, t.metadata.get("payout_item_id", ""), "",
                              f"{t.amount_minor} {t.currency} -> {t.destination}"))
    summary = (f"{len(ledger)} posted in the ledger, {len(stripe)} transfers in Stripe group {batch.batch_id}")
    if drift:
        return AuditResult(False, f"{len(drift)} differences: {summary}", drift)
    return AuditResult(True, f"reconciled: {summary}", [])


def _row(kind: str, transfer_id: str, item_id, ledger: str, stripe: str) -> dict:
    return {"drift": kind, "transfer_id": transfer_id, "payout_item_id": str(item_id), "ledger": ledger,
            "stripe": stripe}
