"""The order in which months may be closed, explained before anything is written.

Balances carry from each month's batch into the next one, so a program's month ends run oldest
first: a month cannot be finalized while an earlier month of the same program with commissions is
not, and cannot get (or rebuild) a draft batch once a later month of that program has a batch.
Programs are independent: one program's open months never hold another back. `finalize_programs`
and `build_manifests` enforce this one step at a time; this module answers the question for a whole
request (one month or a backfill range, one program or a set) up front, so that a run is refused
before its first step writes, with the months to run, in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.periods import first_period, next_period, period_key
from sorae_payouts.ledger.sql import as_date, set_text, text
from sorae_payouts.month_end.program_sets import unique_ids
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, Program, first_period_of


class MonthOrderError(PayoutRefused):
    """Running the requested months now would break carried balances; the message says what to run."""


def batch_statuses(conn: sa.Connection, *, program_id: str = DEFAULT_PROGRAM) -> dict[date, str]:
    return _statuses_of(conn, [program_id]).get(program_id, {})


def _statuses_of(conn: sa.Connection, program_ids: Sequence[str]) -> dict[str, dict[date, str]]:
    statuses: dict[str, dict[date, str]] = {}
    for program_id, period, status in conn.execute(
        set_text(
            "SELECT program_id, period, status FROM payout_batch WHERE program_id IN :program_ids "
            "ORDER BY program_id, period"
        ),
        {"program_ids": list(program_ids)},
    ):
        statuses.setdefault(program_id, {})[as_date(period)] = status
    return statuses


_PENDING = """
SELECT program_id, period FROM (
    SELECT DISTINCT program_id, period FROM commission WHERE period < :p AND program_id IN :program_ids
    UNION SELECT program_id, period FROM commission_period WHERE period < :p AND program_id IN :program_ids
) m
WHERE NOT EXISTS (SELECT 1 FROM payout_batch b WHERE b.program_id = m.program_id AND b.period = m.period)
ORDER BY program_id, period
"""


def _pending_of(conn: sa.Connection, before: date, program_ids: Sequence[str]) -> dict[str, list[date]]:
    pending: dict[str, set[date]] = {}
    for program_id, period in conn.execute(set_text(_PENDING), {"p": before, "program_ids": list(program_ids)}):
        pending.setdefault(program_id, set()).add(as_date(period))
    return {p: sorted(months) for p, months in pending.items()}


def pending_months(conn: sa.Connection, before: date, *, program_id: str = DEFAULT_PROGRAM) -> list[date]:
    """The program's months before `before` that have commissions or are finalized but have no batch
    yet: they must be closed first, oldest first."""
    return _pending_of(conn, before, [program_id]).get(program_id, [])


def next_buildable_month(conn: sa.Connection, *, program_id: str = DEFAULT_PROGRAM) -> date | None:
    """The month whose batch the program can build next: the month after its latest batch, else its
    first month with commissions; None when the program has neither."""
    scope = {"p": program_id}
    latest = conn.execute(
        text("SELECT MAX(period) FROM payout_batch WHERE program_id = :p"), scope
    ).scalar_one_or_none()
    if latest is not None:
        return next_period(as_date(latest))
    first = conn.execute(text("SELECT MIN(period) FROM commission WHERE program_id = :p"), scope).scalar_one_or_none()
    return as_date(first) if first is not None else None


def check_month_end_order(conn: sa.Connection, months: Sequence[date], *, program_id: str = DEFAULT_PROGRAM) -> None:
    """Raise MonthOrderError if closing `months` (finalize + manifest, oldest first) for the program now
    would be refused half-way by the ledger's ordering rules; say which months to run and in which order."""
    refused = month_order_refusals(conn, months, [program_id])
    if program_id in refused:
        raise MonthOrderError(refused[program_id])


def month_order_refusals(conn: sa.Connection, months: Sequence[date], program_ids: Iterable[str]) -> dict[str, str]:
    """For a set of programs (two statements whatever its size): program id -> why closing `months`
    now would be refused, for the programs that would be; the others may run."""
    months = sorted(set(months))
    ids = unique_ids(program_ids)
    if not months or not ids:
        return {}
    statuses = _statuses_of(conn, ids)
    pending = _pending_of(conn, months[0], ids)
    refused = {}
    for program_id in ids:
        why = _refusal(months, statuses.get(program_id, {}), pending.get(program_id, []))
        if why is not None:
            refused[program_id] = why if program_id == DEFAULT_PROGRAM else f"program {program_id}: {why}"
    return refused


def _refusal(months: list[date], statuses: dict[date, str], earlier: list[date]) -> str | None:
    names = ", ".join(period_key(m) for m in months)
    open_months = [m for m in months if statuses.get(m, "draft") == "draft"]
    if not open_months:
        return None  # every month is approved or paid: re-running it changes nothing
    # A draft is rebuilt (or a batch built) only while no later month has a batch, even one the same
    # request would rebuild next: `build_manifests` refuses it, so the run would stop half-way.
    later = [p for p in statuses if p > open_months[0]]
    if later:
        latest = max(statuses)
        redo = (
            f"re-run {period_key(latest)} alone (the latest month, still a draft), or close "
            if statuses[latest] == "draft"
            else "close "
        )
        return (
            f"refused before anything was written: {period_key(open_months[0])} would need a new or rebuilt "
            f"batch, but the later month {period_key(later[0])} already has a batch ({statuses[later[0]]}); "
            f"balances carry from each month into the next, so a month cannot be (re)built after a later one. "
            f"What can run now: {redo}{period_key(next_period(latest))} and the months after it, in calendar "
            "order."
        )
    if earlier:
        order = [period_key(m) for m in earlier] + [period_key(m) for m in months]
        return (
            f"refused before anything was written: {', '.join(period_key(m) for m in earlier)} must be closed "
            f"before {names} (carried balances flow month to month). Run month end in this order: "
            f"{' -> '.join(order)} (one backfill over the range does it in order)."
        )
    return None


BLOCKING_IDS_SHOWN = 5


def blocked_message(conn: sa.Connection, period: date, earlier: list[date], *, program: Program | None = None) -> str:
    """Why the program's `period` waits for its first unfinalized earlier month, with its rows and the fix."""
    program_id = program.program_id if program is not None else DEFAULT_PROGRAM
    first, scope = earlier[0], {"p": earlier[0], "program": program_id}
    (count,) = conn.execute(
        text("SELECT COUNT(*) FROM commission WHERE period = :p AND program_id = :program"), scope
    ).one()
    ids = (
        conn.execute(
            text(
                "SELECT commission_id FROM commission WHERE period = :p AND program_id = :program "
                "ORDER BY commission_id LIMIT :n"
            ),
            {**scope, "n": BLOCKING_IDS_SHOWN},
        )
        .scalars()
        .all()
    )
    shown = ", ".join(ids) + (f" and {count - len(ids)} more" if count > len(ids) else "")
    others = f" (then {', '.join(period_key(p) for p in earlier[1:])})" if len(earlier) > 1 else ""
    of = "" if program_id == DEFAULT_PROGRAM else f" of program {program_id}"
    # The partition key of a month x program partition: "month|program" (defs/partitions.py), quoted
    # for the shell because of the "|".
    command = (
        f"dagster asset materialize -m sorae_payouts.definitions --select finalized_commissions "
        f"--partition '{first.isoformat()}|{program_id}'"
    )
    own_first = program is not None and bool(program.policy.get("first_period"))
    start = first_period_of(program) if program is not None else first_period()
    if first < start and own_first:
        fix = (
            f"{period_key(first)} is before the program's first period {period_key(start)} (its policy "
            f"first_period): if these commissions are real, lower the program's first_period to "
            f"{period_key(first)} and run `{command}`; if they are mistakes, they must be removed from the "
            "ledger by a database administrator (imports no longer accept dates before the first period)"
        )
    elif first < start:
        fix = (
            f"{period_key(first)} is before the ledger's first period {period_key(start)}, so no "
            f"partition can finalize it: if these commissions are real, run `SORAE_FIRST_PERIOD="
            f"{period_key(first)} {command}`; if they are mistakes, they must be removed from the ledger "
            "by a database administrator (imports no longer accept dates before the first period)"
        )
    else:
        fix = f"finalize it first: `{command}` (or materialize that partition in the Dagster UI)"
    return (
        f"month-end {period_key(period)}{of} is blocked: the earlier month {period_key(first)}{others} has "
        f"{count} commission{'s' if count != 1 else ''} ({shown}) and is not finalized yet, and months are "
        f"finalized in order; {fix}"
    )
