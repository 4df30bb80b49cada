"""The vocabulary of an import: what kind of file, what happened to its rows, and why it failed.

Every data row of an input file ends in exactly one of four outcomes, so that
`rows_read == inserted + updated + already_present + rejected_rows` always holds:
- inserted: a new affiliate, commission or order event entered the ledger;
- updated: an existing affiliate's master data changed (affiliates only);
- already_present: the ledger (or an earlier row of the same file) already holds exactly this record,
  which is what makes re-importing a file a no-op;
- rejected: the row broke a rule; each problem is one `RejectedRow`, so one row may have several.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.registry.programs import DEFAULT_PROGRAM


class ImportKind(str, Enum):
    """The three input files Sorae receives; each file holds one kind of record."""

    AFFILIATES = "affiliates"
    COMMISSIONS = "commissions"
    ORDER_EVENTS = "order-events"


@dataclass
class RejectedRow:
    """One problem of one input row. `row` is the 1-based data row number (the header row excluded),
    `column` the input column at fault and `value` its content as read (None when absent)."""

    row: int
    column: str
    reason: str
    value: str | None


@dataclass
class ImportReport:
    """Outcome of one committed import.

    `rejected` holds the first `MAX_REJECTS_IN_MEMORY` problems in row order; all of them
    (`rejected_count`) are in the rejects file at `rejects_path` (None when nothing was rejected).
    `rejected_rows` counts distinct data rows with at least one problem.
    """

    kind: ImportKind
    path: Path
    rows_read: int
    inserted: int
    updated: int
    already_present: int
    rejected: list[RejectedRow]
    rejected_count: int
    rejects_path: Path | None
    seconds: float
    rejected_rows: int = field(default=0)
    # The program every loaded row belongs to; None when the file's program_id column named it row by row.
    program_id: str | None = field(default=DEFAULT_PROGRAM)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else float(self.rows_read)


MAX_REJECTS_IN_MEMORY = 1000


class UnreadableFileError(PayoutRefused):
    """The file cannot be read at all (not CSV/Parquet, wrong columns, broken encoding or quoting).
    Nothing from it was loaded; the message says why."""


class ImportAbortedError(PayoutRefused, RuntimeError):
    """The load could not complete: the database refused it part-way (constraint, trigger, lost
    connection, lock timeout) or the rejects file could not be written. The import ran in one
    transaction, so nothing from the file was loaded; the message says why."""


class Written(NamedTuple):
    """What the final statements wrote. Every other row that passed all rules is already present:
    each row is rejected (recorded in the rejects table), written, or present, so
    already_present = rows_read - rejected_rows - inserted - updated, without another scan."""

    inserted: int
    updated: int
