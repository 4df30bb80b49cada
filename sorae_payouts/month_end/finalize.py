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

Programs: every row belongs to a program and a program's months are closed in order, independently
of other programs. `finalize_programs` finalizes one month for a whole set of programs in a fixed
number of statements (1,000 programs cost what one does, plus the rows); a program that cannot be
finalized is refused alone (`program_sets.ProgramOutcomes`). It is the only form: one program is a
set of one (`outcomes.one(program_id, FinalizeError)` raises its refusal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.periods import finalizable_at, period_key
from sorae_payouts.ledger import schema
from sorae_payouts.ledger.sql import (
    allow_large_sorts,
    as_date,
    as_utc,
    insert_ignoring_conflicts,
    least,
    set_text,
    text,
)
from sorae_payouts.month_end.month_order import blocked_message
from sorae_payouts.month_end.program_sets import ProgramOutcomes, active_programs, chunks, unique_ids
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, Program

# Days after a month ends before it may be finalized, so late reversals still count (configurable).
DEFAULT_HOLDING_DAYS = 3

# Spreads a row's amount over its key so a moved or swapped amount changes the checksum; the modulus
# keeps the sum far from BIGINT overflow at 10M rows per period.
CHECKSUM_SQL = "SUM((amount_minor % 1000003) * (commission_pk % 997 + 1))"


class FinalizeError(PayoutRefused):
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
    program_id: str = DEFAULT_PROGRAM

    @property
    def commission_count(self) -> int:
        return sum(s.commission_count for s in self.snapshots)


# Scoped to the programs being finalized: events and commissions are joined within a program (order
# ids are the merchant's, so two programs may use the same ones). CROSS JOIN keeps SQLite's loop on the
# events (a twentieth of the commissions) probing commissions by order id; with the program equality
# it otherwise walked every commission of the program and probed the events (2.9 s instead of ~0.4 s
# per million commissions). PostgreSQL plans it as the inner join it is.
_APPLY_EVENTS = f"""
WITH pairs AS (
    SELECT c.program_id, c.commission_pk, c.affiliate_id, c.currency, c.amount_minor AS commission_amount,
           c.period, e.event_id, e.event_pk, e.occurred_at,
           CASE WHEN e.kind = 'partial_reversal' THEN e.amount_minor ELSE c.amount_minor END AS requested
    FROM order_event e CROSS JOIN commission c
    WHERE c.program_id = e.program_id AND c.order_id = e.order_id
      AND c.period <= :period AND e.program_id IN :program_ids
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
    (program_id, commission_pk, event_id, affiliate_id, currency, amount_minor, booked_period, kind, created_at)
SELECT program_id, commission_pk, event_id, affiliate_id, currency,
       {least("remaining", "cum_requested - requested")} - {least("remaining", "cum_requested")},
       :period, CASE WHEN period = :period THEN 'in_period' ELSE 'clawback' END, :now
FROM ordered
"""

_SNAPSHOT = f"""
INSERT INTO period_snapshot (program_id, period, currency, commission_count, gross_minor, checksum,
                             in_period_adjustments_minor, clawbacks_minor)
SELECT program_id, :period, currency, SUM(cnt), SUM(gross), SUM(chk), SUM(adj), SUM(claw) FROM (
    SELECT program_id, currency, COUNT(*) AS cnt, SUM(amount_minor) AS gross, {CHECKSUM_SQL} AS chk,
           0 AS adj, 0 AS claw
    FROM commission WHERE period = :period AND program_id IN :program_ids GROUP BY program_id, currency
    UNION ALL
    SELECT program_id, currency, 0, 0, 0,
           SUM(CASE WHEN kind = 'in_period' THEN amount_minor ELSE 0 END),
           SUM(CASE WHEN kind = 'clawback' THEN amount_minor ELSE 0 END)
    FROM commission_adjustment WHERE booked_period = :period AND program_id IN :program_ids
    GROUP BY program_id, currency
) parts GROUP BY program_id, currency
"""

# Months before the one being finalized that have commissions and are not finalized, per program.
_EARLIER_OPEN = """
SELECT DISTINCT c.program_id, c.period FROM commission c
WHERE c.period < :period AND c.program_id IN :program_ids
  AND NOT EXISTS (SELECT 1 FROM commission_period p WHERE p.program_id = c.program_id AND p.period = c.period)
ORDER BY c.program_id, c.period
"""


def holding_days_of(program: Program, base: int) -> int:
    """The program's holding window: its policy's `holding_days`, else the deployment's."""
    return int(program.policy.get("holding_days", base))


def finalize_programs(
    engine: sa.Engine,
    period: date,
    program_ids: Iterable[str],
    *,
    now: datetime,
    holding_days: int = DEFAULT_HOLDING_DAYS,
    holding_days_by_program: Mapping[str, int] | None = None,
) -> ProgramOutcomes[FinalizeReport]:
    """Finalize `period` for every program of the set: one transaction and a fixed number of statements
    per MAX_PROGRAMS_PER_STATEMENT programs. A program's holding window is `holding_days_by_program[p]`
    if given, else its policy's `holding_days`, else `holding_days`. Programs already finalized are
    reported unchanged; programs whose window has not passed, with an earlier open month, unknown or
    disabled are refused alone."""
    outcomes: ProgramOutcomes[FinalizeReport] = ProgramOutcomes()
    for ids in chunks(unique_ids(program_ids)):  # one transaction per chunk of programs
        _finalize_chunk(engine, period, ids, now, holding_days, holding_days_by_program or {}, outcomes)
    return outcomes


def _finalize_chunk(
    engine: sa.Engine,
    period: date,
    ids: list[str],
    now: datetime,
    holding_days: int,
    holding_days_by_program: Mapping[str, int],
    outcomes: ProgramOutcomes[FinalizeReport],
) -> None:
    with engine.begin() as conn:
        allow_large_sorts(conn)
        programs = active_programs(conn, ids, outcomes)
        done = dict(
            conn.execute(
                set_text(
                    "SELECT program_id, finalized_at FROM commission_period WHERE period = :period "
                    "AND program_id IN :program_ids"
                ),
                {"period": period, "program_ids": list(programs)},
            ).all()
        )
        window = {p: holding_days_by_program.get(p, holding_days_of(programs[p], holding_days)) for p in programs}
        earlier: dict[str, list[date]] = {}
        for program_id, month in conn.execute(
            set_text(_EARLIER_OPEN), {"period": period, "program_ids": list(programs)}
        ):
            earlier.setdefault(program_id, []).append(as_date(month))
        todo = []
        for program_id, program in programs.items():
            ready_at = finalizable_at(period, window[program_id])
            if program_id in done:
                continue
            if now < ready_at:
                of = "" if program_id == DEFAULT_PROGRAM else f" of program {program_id}"
                outcomes.refused[program_id] = (
                    f"period {period_key(period)}{of} cannot be finalized before {ready_at:%Y-%m-%d %H:%M} UTC "
                    f"(month end + {window[program_id]}-day holding window for late reversals); it is now "
                    f"{now:%Y-%m-%d %H:%M} UTC"
                )
            elif program_id in earlier:
                outcomes.refused[program_id] = blocked_message(conn, period, earlier[program_id], program=program)
            else:
                todo.append(program_id)
        finalized = _finalize(conn, period, todo, window, now) if todo else set()
        # A program finalized concurrently by another run (its period row won the key) is reported as
        # already finalized, like one finalized before.
        already = {p: as_utc(f) for p, f in done.items()}
        if len(finalized) < len(todo):
            already.update(
                {
                    p: as_utc(f)
                    for p, f in conn.execute(
                        set_text(
                            "SELECT program_id, finalized_at FROM commission_period WHERE period = :period "
                            "AND program_id IN :program_ids"
                        ),
                        {"period": period, "program_ids": [p for p in todo if p not in finalized]},
                    )
                }
            )
        _collect_reports(conn, period, now, finalized, already, outcomes)


def _finalize(
    conn: sa.Connection, period: date, program_ids: list[str], window: Mapping[str, int], now: datetime
) -> set[str]:
    """The writes, for the programs that may be finalized; returns those whose period row this
    transaction inserted (a concurrent finalization of the same program and month keeps its own)."""
    _refresh_planner_statistics(conn)
    # The period rows go first: from here on the commission triggers refuse changes to these months,
    # and a concurrent finalization of the same program and month finds the key taken.
    inserted = (
        conn.execute(
            insert_ignoring_conflicts(conn, schema.commission_period).returning(schema.commission_period.c.program_id),
            [
                {
                    "program_id": p,
                    "period": period,
                    "status": "finalized",
                    "finalized_at": now,
                    "holding_days": window[p],
                }
                for p in program_ids
            ],
        )
        .scalars()
        .all()
    )
    finalized = sorted(inserted)
    if finalized:
        params = {"period": period, "now": now, "program_ids": finalized}
        conn.execute(set_text(_APPLY_EVENTS), params)
        conn.execute(set_text(_SNAPSHOT), params)
    return set(finalized)


def _collect_reports(
    conn: sa.Connection,
    period: date,
    now: datetime,
    finalized: set[str],
    already: dict[str, datetime],
    outcomes: ProgramOutcomes[FinalizeReport],
) -> None:
    snapshots = load_snapshots(conn, period, [*finalized, *already])
    for program_id, finalized_at in already.items():
        outcomes.reports[program_id] = FinalizeReport(
            period, True, finalized_at, snapshots.get(program_id, []), program_id=program_id
        )
    if not finalized:
        return
    params = {"period": period, "program_ids": sorted(finalized)}
    counts: dict[str, dict[str, int]] = {}
    for program_id, kind, n in conn.execute(
        set_text(
            "SELECT program_id, kind, COUNT(*) FROM commission_adjustment WHERE booked_period = :period "
            "AND program_id IN :program_ids GROUP BY program_id, kind"
        ),
        params,
    ):
        counts.setdefault(program_id, {})[kind] = int(n)
    waiting = dict(
        conn.execute(
            set_text(
                "SELECT c.program_id, COUNT(DISTINCT e.event_id) FROM order_event e JOIN commission c "
                "ON c.program_id = e.program_id AND c.order_id = e.order_id "
                "WHERE c.period > :period AND c.program_id IN :program_ids GROUP BY c.program_id"
            ),
            params,
        ).all()
    )
    for program_id in sorted(finalized):
        kinds = counts.get(program_id, {})
        outcomes.reports[program_id] = FinalizeReport(
            period,
            False,
            now,
            snapshots.get(program_id, []),
            kinds.get("in_period", 0),
            kinds.get("clawback", 0),
            int(waiting.get(program_id, 0)),
            program_id,
        )


def _refresh_planner_statistics(conn: sa.Connection) -> None:
    """A month's import can add a million rows since the planner last looked: without fresh
    statistics both databases drive the event join from the commission side (~2 s instead of ~0.4 s
    per million). Sampled, so it costs milliseconds (SQLite) to ~0.2 s (PostgreSQL); once per set of
    programs, not per program."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
    for table in ("commission", "order_event", "commission_adjustment"):
        conn.exec_driver_sql(f"ANALYZE {table}")


_SNAPSHOT_COLUMNS = (
    "program_id, currency, commission_count, gross_minor, checksum, in_period_adjustments_minor, clawbacks_minor"
)


def load_snapshots(conn: sa.Connection, period: date, program_ids: Iterable[str]) -> dict[str, list[CurrencySnapshot]]:
    """The finalization snapshots of `period`, per program of the set (one statement)."""
    snapshots: dict[str, list[CurrencySnapshot]] = {}
    ids = unique_ids(program_ids)
    if not ids:
        return snapshots
    for row in conn.execute(
        set_text(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM period_snapshot WHERE period = :period "
            "AND program_id IN :program_ids ORDER BY program_id, currency"
        ),
        {"period": period, "program_ids": ids},
    ):
        snapshots.setdefault(row[0], []).append(CurrencySnapshot(row[1], *(int(v) for v in row[2:])))
    return snapshots


def is_finalized(conn: sa.Connection, period: date, *, program_id: str = DEFAULT_PROGRAM) -> bool:
    return (
        conn.execute(
            text("SELECT 1 FROM commission_period WHERE period = :period AND program_id = :p"),
            {"period": period, "p": program_id},
        ).first()
        is not None
    )
