"""`sorae-payouts demo`: the whole month on the embedded defaults, in one command.

Creates the ledger, writes a realistic demo data set, imports it, then runs the Dagster month-end job
(finalize + manifest + checks) for the month on a local Dagster instance that `dagster dev` shares.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sorae_payouts.batches import batch_items, load_batch
from sorae_payouts.demo_data import write_demo_data
from sorae_payouts.ingest import ImportKind, import_file
from sorae_payouts.ledger.database import create_ledger_engine, data_dir, database_url, redact, upgrade
from sorae_payouts.money import format_minor
from sorae_payouts.periods import finalizable_at, parse_period, period_key

console = Console()
DEFAULT_HOLDING_DAYS = 3


def latest_finalizable_month(now: datetime, holding_days: int = DEFAULT_HOLDING_DAYS) -> str:
    """The most recent month whose holding window has passed at `now` ("YYYY-MM")."""
    year, month = now.year, now.month
    while True:
        month, year = (month - 1, year) if month > 1 else (12, year - 1)
        if finalizable_at(parse_period(f"{year}-{month:02d}"), holding_days) <= now:
            return f"{year:04d}-{month:02d}"


def demo(
    month: str = typer.Option(None, "--month", help="YYYY-MM; default: the latest month ready to finalize."),
    affiliates: int = typer.Option(200, "--affiliates"),
    commissions: int = typer.Option(5_000, "--commissions"),
) -> None:
    """Run a demo month end to end on the embedded SQLite ledger (or SORAE_DATABASE_URL)."""
    from sorae_payouts.definitions import defs  # Dagster loads only for this command
    from sorae_payouts.defs.instance import local_instance

    month = month or latest_finalizable_month(datetime.now(timezone.utc))
    engine = create_ledger_engine()
    upgrade(engine)
    console.print(f"ledger: {redact(database_url())}")
    files = write_demo_data(data_dir() / "demo" / month, affiliates=affiliates, commissions=commissions, month=month)
    for kind, path in ((ImportKind.AFFILIATES, files.affiliates), (ImportKind.COMMISSIONS, files.commissions),
                       (ImportKind.ORDER_EVENTS, files.order_events)):
        report = import_file(engine, kind, Path(path))
        console.print(f"import {kind.value}: {report.rows_read} read, {report.inserted} inserted, "
                      f"{report.already_present} already present, {report.rejected_count} rejected")
    instance = local_instance(data_dir())
    partition = f"{month}-01"
    result = defs.resolve_job_def("month_end_job").execute_in_process(
        partition_key=partition, instance=instance, raise_on_error=False)
    for evaluation in result.get_asset_check_evaluations():
        colour = "green" if evaluation.passed else "red"
        console.print(f"check {evaluation.check_name}: [{colour}]{'passed' if evaluation.passed else 'FAILED'}[/]")
    if not result.success:
        for failure in result.get_step_failure_events():
            console.print(f"[red]{failure.step_key} failed:[/red] {failure.event_specific_data.error.message}")
        raise typer.Exit(1)
    _print_batch(engine, partition)
    console.print(f"Dagster run {result.run_id} is in {instance.root_directory}; see it with "
                  f"`DAGSTER_HOME={instance.root_directory} dagster dev`")


def _print_batch(engine, partition: str) -> None:
    with engine.connect() as conn:
        batch = load_batch(conn, parse_period(partition))
        totals: dict[tuple[str, str], list[int]] = {}
        for item in batch_items(conn, batch.batch_id):
            t = totals.setdefault((item["currency"], item["carry_reason"] or item["status"]), [0, 0])
            t[0], t[1] = t[0] + 1, t[1] + item["amount_minor"]
    table = Table("currency", "status / reason", "items", "amount", title=f"{batch.batch_id} ({batch.status})")
    for (currency, status), (count, amount) in sorted(totals.items()):
        table.add_row(currency, status, str(count), format_minor(amount, currency))
    console.print(table)
    console.print(f"period {period_key(batch.period)}: manifest hash {batch.manifest_hash}; review with "
                  f"`sorae-payouts batch show {period_key(batch.period)}`")
