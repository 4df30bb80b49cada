"""Partitions: one per program and month ("2026-10-01|default": month start, UTC, then the program id).

Two dimensions (`MultiPartitionsDefinition`; the key string lists them in alphabetical order of their
names, so `month|program`):
- `month`: monthly from the ledger's first period (SORAE_FIRST_PERIOD), the same bound the import puts
  on dates. end_offset=0: only months that have ended are partitions; the holding window is enforced
  by the finalization itself, with a message naming the date.
- `program`: dynamic (`DynamicPartitionsDefinition("program")`): its keys live in the Dagster instance,
  not in code. `program_partitions_sensor` adds the key of every registered program (and
  `sync_program_partitions` lets the CLI add one at once), so adding a program adds its partitions
  without a code change. Keys are never deleted: a disabled program's months stay visible and
  checkable; month-end skips disabled programs (see `month_end`).

No partition mapping to the previous month: Dagster 1.13.27's backfill daemon never puts a
self-dependent asset in the same run as another asset ("Self-dependant assets cannot be materialized
in the same run as other assets"), so the dependency would split finalize and manifest into separate
runs, and it does not order months across programs anyway (measured: docs/architecture.md). The
ledger's ordering rules (`month_order`, per program) refuse a month whose earlier month is not closed,
before anything is written, and every step walks its months oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import dagster as dg

from sorae_payouts.core import periods
from sorae_payouts.core.periods import first_period, parse_period

MONTH, PROGRAM = "month", "program"

monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=first_period().isoformat(), timezone="UTC", end_offset=0)
program_partitions = dg.DynamicPartitionsDefinition(name=PROGRAM)
program_months = dg.MultiPartitionsDefinition({MONTH: monthly_partitions, PROGRAM: program_partitions})


class ProgramMonth(periods.ProgramMonth):
    """One partition: a program's month (the domain's `core.periods.ProgramMonth`, with its partition key)."""

    __slots__ = ()

    @property
    def key(self) -> dg.MultiPartitionKey:
        return partition_key(self.period, self.program_id)


def partition_key(period: date | str, program_id: str) -> dg.MultiPartitionKey:
    """The partition of `program_id`'s month; `period` is a date or "YYYY-MM[-01]"."""
    month = period if isinstance(period, date) else parse_period(period)
    return dg.MultiPartitionKey({MONTH: month.isoformat(), PROGRAM: program_id})


def parse_partition(key: str) -> ProgramMonth:
    """ "2026-10-01|acme" (or a MultiPartitionKey) -> ProgramMonth(2026-10-01, "acme")."""
    dims = (
        key.keys_by_dimension
        if isinstance(key, dg.MultiPartitionKey)
        else program_months.get_partition_key_from_str(key).keys_by_dimension
    )
    return ProgramMonth(parse_period(dims[MONTH]), dims[PROGRAM])


RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def requested(context) -> list[ProgramMonth]:
    """The run's partitions (one, or a range: months x programs), oldest month first, then by program.

    A range is read from the run's range tags: Dagster 1.13.27 gives `context.partition_keys` only the
    FIRST partition when a run also carries the dimension tags `dagster/partition/month|program`, which
    a backfill launched from a job's Partitions page adds (its run plans the whole range, and the
    backfill reports success). Verified; test_dagster_month_end holds it."""
    tags = context.run.tags
    if RANGE_START in tags and RANGE_END in tags:
        keys = program_months.get_partition_keys_in_range(
            dg.PartitionKeyRange(tags[RANGE_START], tags[RANGE_END]), dynamic_partitions_store=context.instance
        )
    else:
        keys = context.partition_keys
    return sorted(parse_partition(key) for key in keys)


def by_month(partitions: Iterable[ProgramMonth]) -> dict[date, list[str]]:
    """{month: [program ids]}, months oldest first: every step walks months in calendar order."""
    months: dict[date, list[str]] = {}
    for p in sorted(partitions):
        months.setdefault(p.period, []).append(p.program_id)
    return months


def sync_program_partitions(instance: dg.DagsterInstance, program_ids: Sequence[str]) -> list[str]:
    """Add a `program` partition key for each id the instance does not have yet; returns those added.
    Domain-free: the caller passes the program ids (e.g. `programs add`, the CLI before a launch)."""
    known = set(instance.get_dynamic_partitions(PROGRAM))
    missing = [p for p in dict.fromkeys(program_ids) if p not in known]
    if missing:
        instance.add_dynamic_partitions(PROGRAM, missing)
    return missing


def range_tags(first: ProgramMonth, last: ProgramMonth) -> dict[str, str]:
    """Run tags for ONE run over the rectangle first.month..last.month x first.program..last.program
    (programs in the instance's key order). Dagster runs a range as one run: `context.partition_keys`."""
    return {RANGE_START: str(first.key), RANGE_END: str(last.key)}
