"""Monthly commission periods. A period is named by the first day of its month (UTC), the same key
Dagster's `MonthlyPartitionsDefinition` uses ("2026-10-01")."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from sorae_payouts.core.errors import InvalidValue

DEFAULT_FIRST_PERIOD = "2025-01"


def parse_period(text: str) -> date:
    """Accept "2026-10" or "2026-10-01" (a partition key) and return the month's first day."""
    parts = text.strip().split("-")
    if (
        len(parts) not in (2, 3)
        or (len(parts) == 3 and parts[2] != "01")
        or not all(p.isascii() and p.isdigit() for p in parts)
        or len(parts[0]) != 4
        or len(parts[1]) != 2
    ):
        raise InvalidValue(f"period {text!r} must look like 2026-10 or 2026-10-01")
    try:
        return date(int(parts[0]), int(parts[1]), 1)
    except ValueError:
        raise InvalidValue(f"period {text!r} must look like 2026-10 or 2026-10-01") from None


def period_of(moment: datetime) -> date:
    """The period a UTC instant belongs to."""
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def next_period(period: date) -> date:
    return date(period.year + period.month // 12, period.month % 12 + 1, 1)


def period_end(period: date) -> datetime:
    """The first instant after the period (exclusive end), in UTC."""
    nxt = next_period(period)
    return datetime(nxt.year, nxt.month, 1, tzinfo=UTC)


def finalizable_at(period: date, holding_days: int) -> datetime:
    """When a period may be finalized: its end plus the holding window for late reversals."""
    return period_end(period) + timedelta(days=holding_days)


def period_key(period: date) -> str:
    """Human and Stripe-facing name of a period: "2026-10"."""
    return f"{period.year:04d}-{period.month:02d}"


def first_period() -> date:
    """The ledger's first period: SORAE_FIRST_PERIOD (YYYY-MM), default 2025-01. The Dagster partitions
    start there, and no commission or order event dated before it is accepted."""
    raw = os.environ.get("SORAE_FIRST_PERIOD", "").strip() or DEFAULT_FIRST_PERIOD
    try:
        return parse_period(raw)
    except ValueError:
        raise InvalidValue(f"SORAE_FIRST_PERIOD={raw!r} must be a month like 2025-01") from None


class ProgramMonth(NamedTuple):
    """A program's month: the unit of month end and execution (a Dagster partition is one)."""

    period: date
    program_id: str

    def __str__(self) -> str:
        return f"{period_key(self.period)} ({self.program_id})"
