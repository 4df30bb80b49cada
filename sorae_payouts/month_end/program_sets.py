"""Month-end work over a set of programs at once: the helpers the set-based domain functions share.

Finalizing, building and checking one month for 1,000 programs must not cost 1,000 x (tens of
statements): each phase runs a fixed number of statements over every program of the set (a bound
list of program ids), and reports per program. A program that cannot go on (out of order, holding
window not passed, unknown or disabled) is *refused* in the outcome, for that program only; the
others proceed. The single-program functions call the set functions with one id and raise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import sqlalchemy as sa

from sorae_payouts.registry.programs import Program, load_programs

T = TypeVar("T")


@dataclass
class ProgramOutcomes(Generic[T]):
    """Per program of the set: its report (done, or nothing to do), or why it was refused."""

    reports: dict[str, T] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def one(self, program_id: str, error: type[Exception]) -> T:
        """The report of `program_id`, or `error(reason)` if it was refused (single-program wrappers)."""
        if program_id in self.refused:
            raise error(self.refused[program_id])
        return self.reports[program_id]


class ProgramRefused(Exception):
    """Raised inside a set transaction when some programs must drop out (e.g. an item moved under a
    concurrent claim): the caller rolls back and runs the set again without them."""

    def __init__(self, reasons: dict[str, str]):
        super().__init__("; ".join(f"{p}: {r}" for p, r in sorted(reasons.items())))
        self.reasons = reasons


def unique_ids(program_ids: Iterable[str]) -> list[str]:
    """The set's program ids, deduplicated, in a stable order (reports and statements follow it)."""
    return sorted(set(program_ids))


# Programs per statement: each brings a few bound values (ids, batch ids, minimums), and PostgreSQL takes
# at most 65,535 per statement (SQLite 32,766). Larger sets run the same statements once per chunk.
MAX_PROGRAMS_PER_STATEMENT = 1_000


def chunks(program_ids: Sequence[str]) -> list[list[str]]:
    """The set in consecutive chunks of at most MAX_PROGRAMS_PER_STATEMENT programs."""
    return [
        list(program_ids[i : i + MAX_PROGRAMS_PER_STATEMENT])
        for i in range(0, len(program_ids), MAX_PROGRAMS_PER_STATEMENT)
    ]


def per_chunk(check: Callable[..., dict]) -> Callable[..., dict]:
    """Run a `(conn, period, program_ids) -> {program: result}` function chunk by chunk, merged."""

    @functools.wraps(check)
    def run(conn: sa.Connection, period, program_ids: Iterable[str]) -> dict:
        results: dict = {}
        for part in chunks(unique_ids(program_ids)):
            results.update(check(conn, period, part))
        return results

    return run


def active_programs(conn: sa.Connection, program_ids: Sequence[str], outcomes: ProgramOutcomes) -> dict[str, Program]:
    """The set's active programs, in order; unknown and disabled ones are refused (nothing is written
    for them: a disabled merchant's months are not closed)."""
    found = load_programs(conn, program_ids)
    kept = {}
    for program_id in program_ids:
        program = found.get(program_id)
        if program is None:
            outcomes.refused[program_id] = f"unknown program {program_id!r}; `sorae-payouts programs add` registers one"
        elif program.status != "active":
            outcomes.refused[program_id] = f"program {program_id!r} is {program.status}; enable it to close its months"
        else:
            kept[program_id] = program
    return kept


# Two transactions at once on PostgreSQL: most of a big build is per-row work inside the database
# (triggers, foreign keys, index inserts) that one statement runs on one core; two slices of the
# programs use this machine's two cores (1,000 programs x 1,000 items: 38 s -> 26 s measured; three
# slices gained nothing more). SQLite has a single writer.
PARALLEL_WORKERS = 2
MIN_PROGRAMS_PER_WORKER = 50  # below this a slice saves less than its connection and transaction cost


def parallel_workers(engine: sa.Engine, program_ids: Sequence[str]) -> int:
    if engine.dialect.name != "postgresql":
        return 1
    return max(1, min(PARALLEL_WORKERS, len(program_ids) // MIN_PROGRAMS_PER_WORKER))


def split_programs(program_ids: Sequence[str], parts: int) -> list[list[str]]:
    """At least `parts` slices of consecutive programs (their rows and index entries lie apart), none
    empty and none above MAX_PROGRAMS_PER_STATEMENT."""
    parts = max(1, parts, -(-len(program_ids) // MAX_PROGRAMS_PER_STATEMENT))
    size = -(-len(program_ids) // parts) if program_ids else 1
    return [list(program_ids[i : i + size]) for i in range(0, len(program_ids), size)]
