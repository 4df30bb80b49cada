"""Which program each row of an import belongs to.

Affiliate ids, commission ids and event ids are unique within a program, so every row is filed under
one. A file either has a `program_id` column, and then each row names its program, or it has none,
and then every row belongs to the import's program (`default` unless the caller names another): a
single-merchant deployment's files and commands work unchanged.

With the column, a row is rejected (column `program_id`) when its cell
- is empty: a file that names programs must name one on every row; filing the row under a guessed
  program could pay one merchant's affiliate from another's money;
- names a program that is not registered, or one that is disabled;
- names another program than the import's, when the import is restricted to its program (the CLI's
  explicit `--program`): a file meant for program A never lands in B.
The registry is read once per import, before the rows are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from sorae_payouts.ingest.checks import RowChecks
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, ProgramError, list_programs, validate_program_id

PROGRAM_COLUMN = "program_id"
# A reason quotes at most this much of a cell (the whole cell is in the rejects file's value column).
_SHOWN = 64


@dataclass(frozen=True)
class ProgramScope:
    """The program rules of one import. `program_id` is the import's program: every row's when the
    file has no program_id column (`in_file` false). `only_program`: rows naming another program are
    rejected. `statuses`: every registered program and its status."""

    program_id: str = DEFAULT_PROGRAM
    in_file: bool = False
    only_program: bool = False
    statuses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: sa.Connection, program_id: str, *, in_file: bool, only_program: bool) -> ProgramScope:
        """Read the registry; the import's own program must be active whenever rows are filed under it."""
        validate_program_id(program_id)
        statuses = {p.program_id: p.status for p in list_programs(conn)}
        if not in_file or only_program:
            if program_id not in statuses:
                raise ProgramError(f"unknown program {program_id!r}; `sorae-payouts programs list` shows them")
            if statuses[program_id] != "active":
                raise ProgramError(f"program {program_id!r} is disabled: nothing can be imported into it")
        return cls(program_id, in_file, only_program, statuses)

    def check(self, checks: RowChecks) -> None:
        """The row-level program rules of one chunk (nothing to check when the file has no column)."""
        if not self.in_file:
            return
        value = checks.chunk[PROGRAM_COLUMN]
        empty = value == ""
        checks.fail(
            empty,
            PROGRAM_COLUMN,
            "program_id is empty: this file has a program_id column, so every row must name its program",
        )
        known = value.isin(list(self.statuses))
        unknown = ~empty & ~known
        if unknown.any():
            checks.fail(unknown, PROGRAM_COLUMN, _quoted("unknown program ", value, unknown, ""))
        active = value.isin([p for p, status in self.statuses.items() if status == "active"])
        disabled = known & ~active
        if disabled.any():
            checks.fail(disabled, PROGRAM_COLUMN, _quoted("program ", value, disabled, " is disabled"))
        other = active & (value != self.program_id) if self.only_program else None
        if other is not None and other.any():
            checks.fail(
                other,
                PROGRAM_COLUMN,
                _quoted(
                    "program ",
                    value,
                    other,
                    f" is not the program of this import ('{self.program_id}'): a file "
                    "imported for one program cannot load rows of another",
                ),
            )

    def sql(self, alias: str = "s") -> str:
        """The program of a staged row in SQL: its program_id column, or the import's program as a
        literal (safe: `validate_program_id` allows only [a-z0-9_-]), which lets the planner use the
        ledger's (program_id, id) keys as directly as it used the ids alone."""
        return f"{alias}.{PROGRAM_COLUMN}" if self.in_file else f"'{self.program_id}'"

    def named(self, alias: str = "s") -> str:
        """SQL text appended to a reason after an id: " of program x". Empty for files without the
        column imported into the default program, whose messages stay as they were."""
        if self.in_file:
            return f" || ' of program ' || {alias}.{PROGRAM_COLUMN}"
        return "" if self.program_id == DEFAULT_PROGRAM else f" || ' of program {self.program_id}'"

    def named_text(self, program: str | None) -> str:
        """The same for a reason built in Python, given the row's program."""
        if self.in_file:
            return f" of program {program}"
        return "" if self.program_id == DEFAULT_PROGRAM else f" of program {self.program_id}"


def _quoted(before: str, value: pd.Series, rows: pd.Series, after: str) -> pd.Series:
    """One reason per row of `rows`, quoting its (shortened) cell; indexed like `value`."""
    cell = value[rows]
    shown = cell.str.slice(0, _SHOWN).where(cell.str.len() <= _SHOWN, cell.str.slice(0, _SHOWN) + "...")
    return (before + "'" + shown + "'" + after).reindex(value.index)
