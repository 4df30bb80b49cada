"""Finalizing a monthly commission period.

Finalization locks a period: its commissions become immutable (database triggers key off the
`commission_period` row), order events known at that moment are applied, and a per-currency snapshot
records what was finalized so later checks can prove nothing changed.

Design for volume: commission rows are never rewritten. An order event's effect is booked as a
`commission_adjustment` row (only the ~5% of commissions that have events are touched), so finalizing a
month of a million commissions costs one aggregate over the period plus work proportional to events.

Order events:
- `cancellation` and `reversal` take back whatever is left of the commission, `partial_reversal` takes
  back its amount, never more than what is left (applied in `occurred_at` order).
- An event against a commission of the period being finalized is an `in_period` adjustment.
- An event against a commission of an already finalized period is a `clawback` booked in the period
  being finalized (the next open one): history is never edited; the manifest nets it.
- Events against commissions of later, still open periods wait for that period's finalization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.ledger.sql import as_date, as_utc, least, text
from sorae_payouts.periods import finalizable_at, first_period, period_key

# Days after a month ends before it may be finalized, so late reversals still count (configurable).
DEFAULT_HOLDING_DAYS = 3

# Spreads a row's amount over its key so a moved or swapped amount changes the checksum; the modulus
# keeps the sum far from BIGINT overflow at 10M rows per period.
CHECKSUM_SQL = "SUM((amount_minor % 1000003) * (commission_pk % 997 + 1))"


class FinalizeError(Exception):
    """The period cannot be finalized now; the message says why and what to do."""


@dataclass
class CurrencySnapshot:
    currency: str
    commission_count: int
    gross_minor: int
    checksum: int
    in_period_adjustments_minor: int
    clawbacks_minor: int

    @property
    def net_minor(self) -> int:
        return self.gross_minor + self.in_period_adjustments_minor + self.clawbacks_minor


@dataclass
class FinalizeReport:
    period: date
    already_finalized: bool
    finalized_at: datetime
    snapshots: list[CurrencySnapshot] = field(default_factory=list)
    adjustments_booked: int = 0
    clawbacks_booked: int = 0
    events_waiting: int = 0

    @property
    def commission_count(self) -> int:
        return sum(s.commission_count for s in self.snapshots)


_APPLY_EVENTS = f"""
WITH pairs AS (
    SELECT c.commission_pk, c.affiliate_id, c.currency, c.amount_minor AS commission_amount, c.period,
           e.event_id, e.event_pk, e.occurred_at,
           CASE WHEN e.kind = 'partial_reversal' THEN e.amount_minor ELSE c.amount_minor END AS requested
    FROM order_event e
    JOIN commission c ON c.order_id = e.order_id
    WHERE c.period <= :period
      AND NOT EXISTS (SELECT 1 FROM commission_adjustment a
                      WHERE a.commission_pk = c.commission_pk AND a.event_id = e.event_id)
),
taken AS (
    SELECT a.commission_pk, -SUM(a.amount_minor) AS already
    FROM commission_adjustment a WHERE a.commission_pk IN (SELECT commission_pk FROM pairs)
    GROUP BY a.commission_pk
),
ordered AS (
    SELECT p.*, p.commission_amount - COALESCE(t.already, 0) AS remaining,
           SUM(p.requested) OVER (PARTITION BY p.commission_pk ORDER BY p.occurred_at, p.event_pk
                                  ROWS UNBOUNDED PRECEDING) AS cum_requested
    FROM pairs p LEFT JOIN taken t ON t.commission_pk = p.commission_pk
)
INSERT INTO commission_adjustment
    (commission_pk, event_id, affiliate_id, currency, amount_minor, booked_period, kind, created_at)
SELECT commission_pk, event_id, affiliate_id, currency,
       {least("remaining", "cum_requested - requested")} - {least("remaining", "cum_requested")},
       :period, CASE WHEN period = :period THEN 'in_period' ELSE 'clawback' END, :now
FROM ordered
"""

_SNAPSHOT = f"""
INSERT INTO period_snapshot (period, currency, commission_count, gross_minor, checksum,
                             in_period_adjustments_minor, clawbacks_minor)
SELECT :period, currency, SUM(cnt), SUM(gross), SUM(chk), SUM(adj), SUM(claw) FROM (
    SELECT currency, COUNT(*) AS cnt, SUM(amount_minor) AS gross, {CHECKSUM_SQL} AS chk, 0 AS adj, 0 AS claw
    FROM commission WHERE period = :period GROUP BY currency
    UNION ALL
    SELECT currency, 0, 0, 0,
           SUM(CASE WHEN kind = 'in_period' THEN amount_minor ELSE 0 END),
           SUM(CASE WHEN kind = 'clawback' THEN amount_minor ELSE 0 END)
    FROM commission_adjustment WHERE booked_period = :period GROUP BY currency
) parts GROUP BY currency
"""


BLOCKING_IDS_SHOWN = 5


def blocked_message(conn: sa.Connection, period: date, earlier: list[date]) -> str:
    """Why `period` waits for the first unfinalized earlier month, with its rows and the fix."""
    first = earlier[0]
    count, = conn.execute(text("SELECT COUNT(*) FROM commission WHERE period = :p"), {"p": first}).one()
    ids = conn.execute(text("SELECT commission_id FROM commission WHERE period = :p ORDER BY commission_id "
                            "LIMIT :n"), {"p": first, "n": BLOCKING_IDS_SHOWN}).scalars().all()
    shown = ", ".join(ids) + (f" and {count - len(ids)} more" if count > len(ids) else "")
    others = f" (then {', '.join(period_key(p) for p in earlier[1:])})" if len(earlier) > 1 else ""
    command = (f"dagster asset materialize -m sorae_payouts.definitions --select finalized_commissions "
               f"--partition {first.isoformat()}")
    if first < first_period():
        fix = (f"{period_key(first)} is before the ledger's first period {period_key(first_period())}, so no "
               f"partition can finalize it: if these commissions are real, run `SORAE_FIRST_PERIOD="
               f"{period_key(first)} {command}`; if they are mistakes, they must be removed from the ledger "
               "by a database administrator (imports no longer accept dates before the first period)")
    else:
        fix = f"finalize it first: `{command}` (or materialize that partition in the Dagster UI)"
    return (f"month-end {period_key(period)} is blocked: the earlier month {period_key(first)}{others} has "
            f"{count} commission{'s' if count != 1 else ''} ({shown}) and is not finalized yet, and months are "
            f"finalized in order; {fix}")


def finalize_period(engine: sa.Engine, period: date, *, now: datetime, holding_days: int) -> FinalizeReport:
    """Finalize `period` once it has ended and the holding window has passed. Idempotent: a period
    that is already finalized is reported as such and nothing changes."""
    with engine.begin() as conn:
        existing = conn.execute(
            text("SELECT finalized_at FROM commission_period WHERE period = :period"), {"period": period}
        ).scalar_one_or_none()
        if existing is not None:
            return FinalizeReport(period, True, as_utc(existing), load_snapshots(conn, period))
        ready_at = finalizable_at(period, holding_days)
        if now < ready_at:
            raise FinalizeError(
                f"period {period_key(period)} cannot be finalized before {ready_at:%Y-%m-%d %H:%M} UTC "
                f"(month end + {holding_days}-day holding window for late reversals); it is now "
                f"{now:%Y-%m-%d %H:%M} UTC"
            )
        earlier = conn.execute(
            text("SELECT DISTINCT period FROM commission WHERE period < :period AND period NOT IN "
                    "(SELECT period FROM commission_period) ORDER BY period"), {"period": period}
        ).scalars().all()
        if earlier:
            raise FinalizeError(blocked_message(conn, period, [as_date(p) for p in earlier]))
        _refresh_planner_statistics(conn)
        # The period row goes first: from here on the commission triggers refuse changes to the month,
        # and a concurrent finalization of the same month fails on the primary key.
        conn.execute(
            text("INSERT INTO commission_period (period, status, finalized_at, holding_days) "
                    "VALUES (:period, 'finalized', :now, :h)"), {"period": period, "now": now, "h": holding_days}
        )
        conn.execute(text(_APPLY_EVENTS), {"period": period, "now": now})
        conn.execute(text(_SNAPSHOT), {"period": period})
        counts = dict(conn.execute(
            text("SELECT kind, COUNT(*) FROM commission_adjustment WHERE booked_period = :period GROUP BY kind"),
            {"period": period}).all())
        waiting = conn.execute(
            text("SELECT COUNT(DISTINCT e.event_id) FROM order_event e JOIN commission c ON c.order_id = e.order_id "
                    "WHERE c.period > :period"), {"period": period}).scalar_one()
        return FinalizeReport(period, False, now, load_snapshots(conn, period),
                              counts.get("in_period", 0), counts.get("clawback", 0), waiting)


def _refresh_planner_statistics(conn: sa.Connection) -> None:
    """A month's import can add a million rows since the planner last looked: without fresh
    statistics both databases drive the event join from the commission side (~2 s instead of ~0.4 s
    per million). Sampled, so it costs milliseconds (SQLite) to ~0.2 s (PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
    for table in ("commission", "order_event", "commission_adjustment"):
        conn.exec_driver_sql(f"ANALYZE {table}")


def load_snapshots(conn: sa.Connection, period: date) -> list[CurrencySnapshot]:
    rows = conn.execute(
        text("SELECT currency, commission_count, gross_minor, checksum, in_period_adjustments_minor, "
                "clawbacks_minor FROM period_snapshot WHERE period = :period ORDER BY currency"), {"period": period}
    ).all()
    return [CurrencySnapshot(*(r[0],), *(int(v) for v in r[1:])) for r in rows]


def is_finalized(conn: sa.Connection, period: date) -> bool:
    return conn.execute(text("SELECT 1 FROM commission_period WHERE period = :period"), {"period": period}).first() is not None

