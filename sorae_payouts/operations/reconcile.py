"""Reconciliation: the batch's transfers in Stripe against the ledger's posted attempts.

Same transfer ids, same amounts, currencies and destinations, same count, the same amounts net of
reversals (Stripe's `amount_reversed` against the item's recorded `reversed_minor`), nothing in
Stripe's transfer group that the ledger does not know, and no transfer outside the group that carries
the batch's metadata (found by listing each destination's transfers: Stripe cannot list by metadata).
Any difference is drift, reported row by row; reversals the ledger has recorded are reported too
(`reversed` rows), without failing.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from sorae_payouts.audit import AuditResult
from sorae_payouts.batches import load_batch
from sorae_payouts.ledger.sql import text
from sorae_payouts.money import format_minor
from sorae_payouts.stripe_gateway import StripeGateway

_POSTED = """
SELECT a.stripe_transfer_id, a.payout_item_id, a.amount_minor, a.currency, a.destination, i.reversed_minor
FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id
WHERE i.batch_id = :b AND a.state = 'posted'
"""
_DESTINATIONS = """
SELECT DISTINCT a.destination FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id
WHERE i.batch_id = :b ORDER BY a.destination
"""
INFORMATIONAL = ("reversed",)


def reconcile_batch(conn: sa.Connection, gateway: StripeGateway, period: date, *,
                    scan_destinations: bool = True) -> AuditResult:
    """`scan_destinations`: also list each destination's transfers (one Stripe list per destination)
    to find transfers outside the batch's group that carry its metadata."""
    batch = load_batch(conn, period)
    ledger = {r[0]: r for r in conn.execute(text(_POSTED), {"b": batch.batch_id})}
    stripe = {t.transfer_id: t for t in gateway.transfers(batch.batch_id)}
    rows = []
    for transfer_id, (_, item_id, amount, currency, destination, reversed_minor) in sorted(ledger.items()):
        t = stripe.get(transfer_id)
        net = int(amount) - int(reversed_minor)
        if t is None:
            rows.append(_row("missing_in_stripe", transfer_id, item_id, f"{amount} {currency} -> {destination}", ""))
        elif (t.amount_minor, t.currency, t.destination) != (amount, currency, destination):
            rows.append(_row("mismatch", transfer_id, item_id, f"{amount} {currency} -> {destination}",
                             f"{t.amount_minor} {t.currency} -> {t.destination}"))
        elif t.amount_minor - t.amount_reversed != net:
            rows.append(_row("reversal_not_recorded", transfer_id, item_id,
                             f"net {format_minor(net, currency)} ({format_minor(reversed_minor, currency)} reversed)",
                             f"net {format_minor(t.amount_minor - t.amount_reversed, currency)} "
                             f"({format_minor(t.amount_reversed, currency)} reversed): run `sorae-payouts refresh`"))
        elif reversed_minor:
            rows.append(_row("reversed", transfer_id, item_id,
                             f"net {format_minor(net, currency)} ({format_minor(reversed_minor, currency)} reversed)",
                             f"net {format_minor(t.amount_minor - t.amount_reversed, currency)}"))
    for transfer_id, t in sorted(stripe.items()):
        if transfer_id not in ledger:
            rows.append(_row("unknown_to_ledger", transfer_id, t.metadata.get("payout_item_id", ""), "",
                             f"{t.amount_minor} {t.currency} -> {t.destination}"))
    outside = _outside_group(conn, gateway, batch.batch_id) if scan_destinations else []
    rows += outside
    drift = [r for r in rows if r["drift"] not in INFORMATIONAL]
    reversed_count = len(rows) - len(drift)
    summary = (f"{len(ledger)} posted in the ledger, {len(stripe)} transfers in Stripe group {batch.batch_id}, "
               f"{reversed_count} reversed (compared net of reversals)"
               + ("" if scan_destinations else ", destinations not scanned"))
    if drift:
        return AuditResult(False, f"{len(drift)} differences: {summary}", rows)
    return AuditResult(True, f"reconciled: {summary}", rows)


def _outside_group(conn: sa.Connection, gateway: StripeGateway, batch_id: str) -> list[dict]:
    """Transfers to the batch's destinations whose metadata names this batch but whose transfer group
    is another one (or none): money sent for the batch that the group-based view would miss."""
    found = []
    for destination in conn.execute(text(_DESTINATIONS), {"b": batch_id}).scalars():
        for t in gateway.transfers(None, destination=destination):
            if t.metadata.get("batch_id") == batch_id and t.transfer_group != batch_id:
                found.append(_row("outside_group", t.transfer_id, t.metadata.get("payout_item_id", ""), "",
                                  f"{t.amount_minor} {t.currency} -> {t.destination} in group "
                                  f"{t.transfer_group or '(none)'}"))
    return found


def _row(kind: str, transfer_id: str, item_id, ledger: str, stripe: str) -> dict:
    return {"drift": kind, "transfer_id": transfer_id, "payout_item_id": str(item_id), "ledger": ledger,
            "stripe": stripe}
