"""Tables and messages shared by several commands (rich tables, their --json form)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from rich.table import Table

from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import finalizable_at, period_key
from sorae_payouts.execution.outcomes import BatchOutcome
from sorae_payouts.month_end.finalize import DEFAULT_HOLDING_DAYS


def outcome_table(outcome: BatchOutcome) -> Table:
    """Items and amounts per currency and outcome (posted, failed, held, ..., carried_forward)."""
    table = Table("currency", "outcome", "items", "amount", title=f"{outcome.batch_id}: {outcome.status}")
    for (currency, status), (count, amount) in sorted(outcome.totals.items()):
        table.add_row(currency, status, str(count), format_minor(amount, currency))
    return table


def outcome_json(outcome: BatchOutcome) -> dict:
    """The outcome table as data: amounts in integer minor units with their currency."""
    return {
        "batch_id": outcome.batch_id,
        "status": outcome.status,
        "totals": [
            {"currency": c, "outcome": o, "items": n, "amount_minor": a}
            for (c, o), (n, a) in sorted(outcome.totals.items())
        ],
    }


def missing_batch_message(conn: sa.Connection, period: date, now: datetime | None = None) -> str:
    """What to say when a month has no batch: which batches exist and which month can be built next."""
    from sorae_payouts.month_end.batches import list_batches
    from sorae_payouts.month_end.month_order import next_buildable_month

    now = now or datetime.now(UTC)
    batches = list_batches(conn)
    existing = ", ".join(f"{period_key(b.period)} ({b.status})" for b in batches) or "none yet"
    parts = [f"no payout batch for {period_key(period)}. Batches: {existing}."]
    ready = finalizable_at(period, DEFAULT_HOLDING_DAYS)
    if ready > now:
        parts.append(
            f"{period_key(period)} cannot be closed before {ready:%Y-%m-%d} (month end + "
            f"{DEFAULT_HOLDING_DAYS}-day holding window)."
        )
    upcoming = next_buildable_month(conn)
    if upcoming is not None:
        when = finalizable_at(upcoming, DEFAULT_HOLDING_DAYS)
        hint = "now" if when <= now else f"from {when:%Y-%m-%d}"
        parts.append(
            f"Next month that can be built: {period_key(upcoming)} ({hint}: "
            f"`sorae-payouts month-end {period_key(upcoming)}`)."
        )
    elif not batches:
        parts.append("The ledger has no commissions yet: import some first (`sorae-payouts import ...`).")
    return " ".join(parts)
