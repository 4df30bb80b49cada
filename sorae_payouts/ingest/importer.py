"""`import_file`: one input file into the ledger, in one transaction.

Flow: check the header (an unreadable file stops here, before the database is touched); then, in
one transaction, stream the file in chunks through the row-level checks into the staging table;
run the kind's cross-row rules in SQL; write the ledger; stream the rejects file; commit. If the
database fails anywhere on the way the transaction rolls back: nothing from the file is loaded and
`ImportAbortedError` says why.

Programs: every row belongs to a program (`program_scope`): the one its `program_id` cell names when the
file has that column, else the import's `program_id` (default `default`). The registry is read once,
in the import's transaction, before the rows are read.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import sqlalchemy as sa

from sorae_payouts.ingest import affiliates, commissions, order_events
from sorae_payouts.ingest.checks import DateWindow, RowChecks
from sorae_payouts.ingest.model import ImportAbortedError, ImportKind, ImportReport
from sorae_payouts.ingest.program_scope import PROGRAM_COLUMN, ProgramScope
from sorae_payouts.ingest.read_ahead import read_ahead
from sorae_payouts.ingest.reader import Source, open_source
from sorae_payouts.ingest.rejects import RejectsSummary, rejects_path, write_rejects
from sorae_payouts.ingest.staging import KindSpec, Prepared, StagingArea
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

SPECS: dict[ImportKind, KindSpec] = {
    ImportKind.AFFILIATES: affiliates.SPEC,
    ImportKind.COMMISSIONS: commissions.SPEC,
    ImportKind.ORDER_EVENTS: order_events.SPEC,
}
DEFAULT_CHUNK_ROWS = 100_000
_DATABASE_ERRORS = (sa.exc.SQLAlchemyError, psycopg.Error, sqlite3.Error)


def import_file(
    engine: sa.Engine,
    kind: ImportKind,
    path: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
    program_id: str = DEFAULT_PROGRAM,
    reject_other_programs: bool = False,
) -> ImportReport:
    """Import `path` (CSV or Parquet) of `kind` into the ledger behind `engine`.

    Valid rows load all together or not at all; invalid rows are reported (in the returned report
    and in `<input stem>.rejects.csv` next to the input) and never loaded. Re-importing a file is a
    no-op. `on_progress` is called after each chunk with the total number of rows read so far.
    `now` (default: the clock) bounds the plausible dates and stamps `imported_at`.

    Rows belong to `program_id` when the file has no `program_id` column; with the column, each row to
    the (registered, active) program it names. `reject_other_programs`: rows naming another program
    than `program_id` are rejected (a file meant for one program cannot load into another).

    Raises `UnreadableFileError` when the file cannot be read at all (nothing loaded),
    `ProgramError` when rows would be filed under `program_id` and it is unknown or disabled
    (nothing loaded), and `ImportAbortedError` when the database refused the load (nothing loaded).
    """
    kind = ImportKind(kind)
    spec, path = SPECS[kind], Path(path)
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    started = time.monotonic()
    source = open_source(path, (*spec.columns, PROGRAM_COLUMN), (*spec.optional, PROGRAM_COLUMN))
    in_file = PROGRAM_COLUMN in source.names
    if not in_file:  # read exactly the kind's columns, as before programs
        source = replace(source, columns=spec.columns)
    now = now or datetime.now(UTC)
    window = DateWindow.at(now)
    target = rejects_path(path)
    temporary = target.with_name(f".{target.name}.partial")
    try:
        with engine.begin() as conn:
            program = ProgramScope.load(conn, program_id, in_file=in_file, only_program=reject_other_programs)
            db = StagingArea(conn, spec, chunk_rows, program)
            try:
                db.create()
                chunks = _checked_chunks(source, spec, db, chunk_rows, window, program)
                if db.dialect == "postgresql":
                    # COPY sends a chunk in one call, so parsing the next chunk in a thread overlaps
                    # with it. Not on SQLite: executemany gives up the GIL once per row, and every
                    # row would then wait for the reading thread to hand it back.
                    chunks = read_ahead(chunks)
                with closing(chunks):
                    for rows, stage, rejects in chunks:
                        db.write(stage)
                        db.write(rejects)
                        db.rows_read += rows
                        if on_progress is not None:
                            on_progress(db.rows_read)
                db.finish_loading()
                written = spec.apply(db, now)
                try:
                    summary = write_rejects(db, path, temporary)
                except OSError as exc:  # rejects nobody can read would be lost: load nothing instead
                    raise ImportAbortedError(
                        f"nothing was imported from {path}: cannot write the rejects file {target}: {exc}"
                    ) from exc
                db.drop()
            finally:
                _quietly(db.restore_settings)
    except _DATABASE_ERRORS as exc:
        temporary.unlink(missing_ok=True)
        raise ImportAbortedError(
            f"nothing was imported from {path}: the database refused the load: {_first_line(exc)}"
        ) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _publish(summary, target)
    return ImportReport(
        kind=kind,
        path=path,
        rows_read=db.rows_read,
        inserted=written.inserted,
        updated=written.updated,
        already_present=db.rows_read - summary.rows - written.inserted - written.updated,
        rejected=summary.head,
        rejected_count=summary.count,
        rejects_path=target if summary.count else None,
        seconds=time.monotonic() - started,
        rejected_rows=summary.rows,
        program_id=None if in_file and not reject_other_programs else program_id,
    )


def _checked_chunks(
    source: Source, spec: KindSpec, db: StagingArea, chunk_rows: int, window: DateWindow, program: ProgramScope
) -> Iterator[tuple[int, Prepared, Prepared]]:
    """Read, check and convert chunk after chunk (possibly in the read-ahead thread: so no use of
    the connection here)."""
    for chunk in source.chunks(chunk_rows):
        frame, row_no, unreadable = chunk.frame, chunk.row_no, chunk.unreadable
        if len(unreadable):
            # Lines that could not be read are staged too (blank fields), so that every row of the file
            # has exactly one outcome and the rejects file can list them in order.
            blank = pd.DataFrame({c: pd.Series([""] * len(unreadable), dtype="str") for c in frame.columns})
            frame = pd.concat([frame, blank], ignore_index=True)
            row_no = pd.concat([row_no, unreadable["row_no"]], ignore_index=True)
        checks = RowChecks(frame, row_no=row_no, window=window)
        checks.unreadable(
            row_no.isin(unreadable["row_no"]) if len(unreadable) else pd.Series(False, index=frame.index), unreadable
        )
        program.check(checks)
        checks.cell_length(source.max_line_bytes, *db.raw_columns)
        parsed = spec.validate(frame, checks)
        yield chunk.rows, db.prepare_stage(checks.stage_frame(parsed)), db.prepare_rejects(checks.rejects())


def _publish(rejects: RejectsSummary, target: Path) -> None:
    """After commit: put the rejects file in place, or remove a stale one from an earlier import."""
    try:
        if rejects.written is not None:
            rejects.written.replace(target)
        else:
            target.unlink(missing_ok=True)
    except OSError as exc:
        raise OSError(
            f"the import committed, but its rejects file could not be put in place at {target} "
            f"(the rejects are in {rejects.written}): {exc}"
        ) from exc


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except _DATABASE_ERRORS:  # a broken connection is reported by the original error, not this one
        pass


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return (str(original).strip().splitlines() or [type(original).__name__])[0]
