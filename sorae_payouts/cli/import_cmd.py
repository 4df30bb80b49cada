"""`sorae-payouts import ...`: load affiliates, commissions or order events from a CSV/Parquet file.

Exit codes: 0 = every row loaded or already present; 2 = the valid rows loaded and some rows were
rejected (listed on the console and in `<file stem>.rejects.csv` next to the file); 1 = nothing was
loaded, because the file cannot be read at all, the program is unknown or disabled, or the database
refused the load.

Programs: a file without a `program_id` column loads into `--program` (default: `default`, so a
single-merchant deployment's commands work unchanged). A file with the column loads each row into the
program it names; given `--program` explicitly as well, rows naming another program are rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from sorae_payouts.cli.refusals import RefusingTyper
from sorae_payouts.ingest import (
    ImportAbortedError,
    ImportKind,
    ImportReport,
    UnreadableFileError,
    estimate_rows,
    import_file,
)
from sorae_payouts.ingest.importer import DEFAULT_CHUNK_ROWS
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, ProgramError, require_active_program

EXIT_LOADED, EXIT_NOTHING_LOADED, EXIT_REJECTS = 0, 1, 2
REJECTS_SHOWN = 20

app = RefusingTyper(
    help="Import affiliates, commissions or order events (CSV or Parquet) into the ledger "
    "(SORAE_DATABASE_URL). Exit code 0: all rows loaded or already present; 2: some rows rejected "
    "(the valid ones loaded; see <file>.rejects.csv); 1: nothing loaded (unreadable file, unknown or disabled "
    "program, or database error). Every file may have a program_id column (each row's program); without it the "
    "rows belong to --program (default: default).",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)

FileArgument = Annotated[Path, typer.Argument(help="Input file: .csv, .parquet or .pq", show_default=False)]
ChunkRows = Annotated[int, typer.Option("--chunk-rows", min=1, help="Rows read and checked per chunk (memory bound).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output (counts and the first rejects).")]
ProgramOption = Annotated[
    str | None,
    typer.Option(
        "--program",
        show_default=False,
        help=f"Program the rows belong to when the file has no program_id column (default: {DEFAULT_PROGRAM}). "
        "Given for a file with the column, rows naming another program are rejected.",
    ),
]


@app.command("affiliates")
def affiliates_command(
    file: FileArgument,
    chunk_rows: ChunkRows = DEFAULT_CHUNK_ROWS,
    as_json: AsJson = False,
    program: ProgramOption = None,
) -> None:
    """Affiliates: affiliate_id, name, email, stripe_account_id, currency. Known ids are updated."""
    _run(ImportKind.AFFILIATES, file, chunk_rows, as_json, program)


@app.command("commissions")
def commissions_command(
    file: FileArgument,
    chunk_rows: ChunkRows = DEFAULT_CHUNK_ROWS,
    as_json: AsJson = False,
    program: ProgramOption = None,
) -> None:
    """Commissions: commission_id, affiliate_id, order_id, amount, currency, earned_at (with time zone)."""
    _run(ImportKind.COMMISSIONS, file, chunk_rows, as_json, program)


@app.command("order-events")
def order_events_command(
    file: FileArgument,
    chunk_rows: ChunkRows = DEFAULT_CHUNK_ROWS,
    as_json: AsJson = False,
    program: ProgramOption = None,
) -> None:
    """Order events: event_id, order_id, kind (cancellation|reversal|partial_reversal), amount, occurred_at."""
    _run(ImportKind.ORDER_EVENTS, file, chunk_rows, as_json, program)


def _run(kind: ImportKind, file: Path, chunk_rows: int, as_json: bool = False, program: str | None = None) -> None:
    engine = create_ledger_engine()
    try:
        if program is not None:  # named explicitly: it must be usable before the file is even opened
            with engine.connect() as conn:
                require_active_program(conn, program)
        report = _import_with_progress(engine, kind, file, chunk_rows, program)
    except (UnreadableFileError, ImportAbortedError, ProgramError) as exc:
        errors.print(f"[bold red]import failed:[/] {escape(str(exc))}", highlight=False)
        errors.print("nothing was loaded", style="red")
        raise typer.Exit(EXIT_NOTHING_LOADED) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report_json(report), indent=2))
        if report.rejected_count:
            raise typer.Exit(EXIT_REJECTS)
        return
    # File names, reasons and values come from the input: printed as text, never as rich markup
    # (a cell like "[/x]" would otherwise crash the command after the import committed).
    console.print(Text(summary_line(report)), highlight=False)
    if report.rejected_count:
        console.print(rejects_table(report))
        hidden = report.rejected_count - min(len(report.rejected), REJECTS_SHOWN)
        if hidden > 0:
            console.print(Text(f"{hidden:,} more in {report.rejects_path}"), highlight=False)
        else:
            console.print(Text(f"all rejects in {report.rejects_path}"), highlight=False)
        raise typer.Exit(EXIT_REJECTS)


def _import_with_progress(engine, kind: ImportKind, file: Path, chunk_rows: int, program: str | None) -> ImportReport:
    estimate = estimate_rows(file)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=errors, transient=True) as progress:
        task = progress.add_task(f"{kind.value} {file.name}", total=estimate)
        total = estimate

        def advance(rows_read: int) -> None:
            nonlocal total
            # A CSV's row count is estimated from its first lines; never let the bar run past 100%.
            if total is not None and rows_read > total:
                total = rows_read
            progress.update(task, completed=rows_read, total=total)

        return import_file(
            engine,
            kind,
            file,
            chunk_rows=chunk_rows,
            on_progress=advance,
            program_id=program or DEFAULT_PROGRAM,
            reject_other_programs=program is not None,
        )


def summary_line(report: ImportReport) -> str:
    rejected = f"rejected {report.rejected_rows:,}"
    if report.rejected_count != report.rejected_rows:
        rejected += f" ({report.rejected_count:,} problems)"
    return (
        f"{report.kind.value} {report.path.name}{_program_note(report)}: read {report.rows_read:,} | "
        f"inserted {report.inserted:,} | "
        f"updated {report.updated:,} | already present {report.already_present:,} | {rejected} | "
        f"{report.rows_per_second:,.0f} rows/s ({report.seconds:.1f} s)"
    )


def _program_note(report: ImportReport) -> str:
    """Nothing for the default program (single-merchant output unchanged); else which program."""
    if report.program_id is None:
        return " (program per row)"
    return "" if report.program_id == DEFAULT_PROGRAM else f" (program {report.program_id})"


def report_json(report: ImportReport) -> dict:
    return {
        "kind": report.kind.value,
        "path": str(report.path),
        "program_id": report.program_id,
        "rows_read": report.rows_read,
        "inserted": report.inserted,
        "updated": report.updated,
        "already_present": report.already_present,
        "rejected_rows": report.rejected_rows,
        "rejected_problems": report.rejected_count,
        "rejects_path": str(report.rejects_path) if report.rejected_count else None,
        "rejects": [
            {"row": r.row, "column": r.column, "reason": r.reason, "value": r.value}
            for r in report.rejected[:REJECTS_SHOWN]
        ],
        "seconds": round(report.seconds, 3),
    }


def rejects_table(report: ImportReport) -> Table:
    table = Table(title=Text(f"rejected rows (row = data row number in {report.path.name}, header excluded)"))
    for name, justify in (("row", "right"), ("column", "left"), ("reason", "left"), ("value", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for reject in report.rejected[:REJECTS_SHOWN]:
        table.add_row(
            str(reject.row),
            Text(reject.column),
            Text(reject.reason),
            Text("" if reject.value is None else reject.value),
        )
    return table
