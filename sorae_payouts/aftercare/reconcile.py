"""Reconciliation: a program's batch, its transfers in Stripe (its paying account, its transfer group)
against the ledger's posted attempts.

Same transfer ids, same amounts, currencies and destinations, same count, the same amounts net of
reversals (Stripe's `amount_reversed` against the item's recorded `reversed_minor`), nothing in
Stripe's transfer group that the ledger does not know, and no transfer outside the group that carries
the batch's payment identity (program and month in its metadata, `identity.transfer_identity`; the
previous format's `batch_id`). Stripe cannot list by metadata, so the paying account's transfers
created since the batch was approved (none can be for it before) are listed with the `created[gte]`
filter and matched on metadata: one paged scan, about as long as the batch itself.
Any difference is drift, reported row by row; reversals the ledger has recorded are reported too
(`reversed` rows), without failing.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import period_key
from sorae_payouts.execution.identity import transfer_group, transfer_identity
from sorae_payouts.ledger.sql import text
from sorae_payouts.month_end.audit import AuditResult
from sorae_payouts.month_end.batches import load_batch
from sorae_payouts.registry.paying_accounts import require_program_gateway
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, get_program
from sorae_payouts.stripe_gateway import StripeGateway

_POSTED = """
SELECT a.stripe_transfer_id, a.payout_item_id, a.amount_minor, a.currency, a.destination, i.reversed_minor
FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id
WHERE i.batch_id = :b AND a.state = 'posted'
"""
# Clock skew between our approval timestamp and Stripe's `created`: scan a little earlier.
APPROVAL_MARGIN_SECONDS = 3600
INFORMATIONAL = ("reversed",)


def reconcile_batch(
    conn: sa.Connection,
    gateway: StripeGateway,
    period: date,
    *,
    program_id: str = DEFAULT_PROGRAM,
    scan_outside_group: bool = True,
) -> AuditResult:
    """Reconcile the program's batch of `period` through `gateway` (its paying account's).
    `scan_outside_group`: also list the transfers created since approval to find those outside the
    batch's group that carry its metadata.

    The ledger is read first and the connection's (read-only) transaction ended before Stripe is
    called: on SQLite every transaction holds the write lock, which the shared rate limiter (and any
    other process) needs while the Stripe pages are read."""
    require_program_gateway(get_program(conn, program_id), gateway)
    batch = load_batch(conn, period, program_id=program_id)
    group = transfer_group(batch.period, program_id)
    ledger = {r[0]: r for r in conn.execute(text(_POSTED), {"b": batch.batch_id})}
    if conn.in_transaction():
        conn.rollback()  # nothing was written: release the read transaction (and SQLite's lock)
    stripe = {t.transfer_id: t for t in gateway.transfers(group)}
    rows = []
    for transfer_id, (_, item_id, amount, currency, destination, reversed_minor) in sorted(ledger.items()):
        t = stripe.get(transfer_id)
        net = int(amount) - int(reversed_minor)
        if t is None:
            rows.append(_row("missing_in_stripe", transfer_id, item_id, f"{amount} {currency} -> {destination}", ""))
        elif (t.amount_minor, t.currency, t.destination) != (amount, currency, destination):
            rows.append(
                _row(
                    "mismatch",
                    transfer_id,
                    item_id,
                    f"{amount} {currency} -> {destination}",
                    f"{t.amount_minor} {t.currency} -> {t.destination}",
                )
            )
        elif t.amount_minor - t.amount_reversed != net:
            rows.append(
                _row(
                    "reversal_not_recorded",
                    transfer_id,
                    item_id,
                    f"net {format_minor(net, currency)} ({format_minor(reversed_minor, currency)} reversed)",
                    f"net {format_minor(t.amount_minor - t.amount_reversed, currency)} "
                    f"({format_minor(t.amount_reversed, currency)} reversed): run `sorae-payouts refresh`",
                )
            )
        elif reversed_minor:
            rows.append(
                _row(
                    "reversed",
                    transfer_id,
                    item_id,
                    f"net {format_minor(net, currency)} ({format_minor(reversed_minor, currency)} reversed)",
                    f"net {format_minor(t.amount_minor - t.amount_reversed, currency)}",
                )
            )
    for transfer_id, t in sorted(stripe.items()):
        if transfer_id not in ledger:
            rows.append(
                _row(
                    "unknown_to_ledger",
                    transfer_id,
                    t.metadata.get("payout_item_id", ""),
                    "",
                    f"{t.amount_minor} {t.currency} -> {t.destination}",
                )
            )
    outside = _outside_group(gateway, batch, program_id, group) if scan_outside_group else []
    rows += outside
    drift = [r for r in rows if r["drift"] not in INFORMATIONAL]
    reversed_count = len(rows) - len(drift)
    summary = (
        f"{len(ledger)} posted in the ledger, {len(stripe)} transfers in Stripe group {group}, "
        f"{reversed_count} reversed (compared net of reversals)"
        + ("" if scan_outside_group else ", transfers outside the group not scanned")
    )
    if drift:
        return AuditResult(False, f"{len(drift)} differences: {summary}", rows)
    return AuditResult(True, f"reconciled: {summary}", rows)


def _outside_group(gateway: StripeGateway, batch, program_id: str, group: str) -> list[dict]:
    """Transfers whose metadata names this batch's payment identity (program and month, or the previous
    format's batch id) but whose transfer group is another one (or none): money sent for the batch
    that the group-based view would miss."""
    if batch.approved_at is None:
        return []  # a draft was never executed: nothing can have been sent for it
    since = int(batch.approved_at.timestamp()) - APPROVAL_MARGIN_SECONDS
    ours = (program_id, period_key(batch.period))

    def for_this_batch(t) -> bool:
        identity = transfer_identity(t.metadata, t.currency)
        legacy = t.metadata.get("batch_id")
        if legacy:  # the previous format names its batch (default program) outright
            return program_id == DEFAULT_PROGRAM and legacy == batch.batch_id
        return identity is not None and (identity.program_id, identity.period) == ours

    return [
        _row(
            "outside_group",
            t.transfer_id,
            t.metadata.get("payout_item_id", ""),
            "",
            f"{t.amount_minor} {t.currency} -> {t.destination} in group {t.transfer_group or '(none)'}",
        )
        for t in gateway.transfers(None, created_since=since)
        if t.transfer_group != group and for_this_batch(t)
    ]


def _row(kind: str, transfer_id: str, item_id, ledger: str, stripe: str) -> dict:
    return {
        "drift": kind,
        "transfer_id": transfer_id,
        "payout_item_id": str(item_id),
        "ledger": ledger,
        "stripe": stripe,
    }
