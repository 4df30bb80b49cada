"""The order in which months may be closed, explained before anything is written.

Balances carry from each month's batch into the next one, so month ends run oldest first: a month
cannot be finalized while an earlier month with commissions is not, and cannot get (or rebuild) a
draft batch once a later month has a batch. `finalize_period` and `build_manifest` enforce this one
step at a time; this module answers the question for a whole request (one month or a backfill range)
up front, so that a run is refused before its first step writes, with the months to run, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa

from sorae_payouts.ledger.sql import as_date, text
from sorae_payouts.periods import next_period, period_key


class MonthOrderError(Exception):
    """Running the requested months now would break carried balances; the message says what to run."""


def batch_statuses(conn: sa.Connection) -> dict[date, str]:
    return {as_date(p): s for p, s in conn.execute(text("SELECT period, status FROM payout_batch ORDER BY period"))}


def pending_months(conn: sa.Connection, before: date) -> list[date]:
    """Months before `before` that have commissions or are finalized but have no batch yet: they
    must be closed first, oldest first."""
    rows = conn.execute(text(
        "SELECT period FROM (SELECT DISTINCT period FROM commission WHERE period < :p "
        "UNION SELECT period FROM commission_period WHERE period < :p) m "
        "WHERE period NOT IN (SELECT period FROM payout_batch) ORDER BY period"), {"p": before}).scalars().all()
    return sorted({as_date(p) for p in rows})


def next_buildable_month(conn: sa.Connection) -> date | None:
    """The month whose batch can be built next: the month after the latest batch, else the first
    month with commissions; None on an empty ledger."""
    latest = conn.execute(text("SELECT MAX(period) FROM payout_batch")).scalar_one_or_none()
    if latest is not None:
        return next_period(as_date(latest))
    first = conn.execute(text("SELECT MIN(period) FROM commission")).scalar_one_or_none()
    return as_date(first) if first is not None else None


def check_month_end_order(conn: sa.Connection, months: Sequence[date]) -> None:
    """Raise MonthOrderError if closing `months` (finalize + manifest, oldest first) now would be
    refused half-way by the ledger's ordering rules; say which months to run and in which order."""
    months = sorted(set(months))
    if not months:
        return
    statuses = batch_statuses(conn)
    names = ", ".join(period_key(m) for m in months)
    open_months = [m for m in months if statuses.get(m, "draft") == "draft"]
    if not open_months:
        return  # every month is approved or paid: re-running it changes nothing
    # A draft is rebuilt (or a batch built) only while no later month has a batch, even one the same
    # request would rebuild next: `build_manifest` refuses it, so the run would stop half-way.
    later = [p for p in statuses if p > open_months[0]]
    if later:
        latest = max(statuses)
        redo = (f"re-run {period_key(latest)} alone (the latest month, still a draft), or close "
                if statuses[latest] == "draft" else "close ")
        raise MonthOrderError(
            f"refused before anything was written: {period_key(open_months[0])} would need a new or rebuilt "
            f"batch, but the later month {period_key(later[0])} already has a batch ({statuses[later[0]]}); "
            f"balances carry from each month into the next, so a month cannot be (re)built after a later one. "
            f"What can run now: {redo}{period_key(next_period(latest))} and the months after it, in calendar order.")
    earlier = pending_months(conn, months[0])
    if earlier:
        order = [period_key(m) for m in earlier] + [period_key(m) for m in months]
        raise MonthOrderError(
            f"refused before anything was written: {', '.join(period_key(m) for m in earlier)} must be closed "
            f"before {names} (carried balances flow month to month). Run month end in this order: "
            f"{' -> '.join(order)} (one backfill over the range does it in order).")
