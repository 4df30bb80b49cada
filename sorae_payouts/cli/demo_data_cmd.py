"""`sorae-payouts demo-data`: write a month of realistic demo input files (affiliates, commissions,
order events) to try the import and payout steps without production data."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sorae_payouts.core.money import format_minor
from sorae_payouts.demo.data import default_month, write_demo_data

console = Console()


def demo_data(
    out: Path = typer.Option(..., "--out", help="Folder to write the three files into (created if missing)."),
    affiliates: int = typer.Option(200, "--affiliates", help="Number of affiliates."),
    commissions: int = typer.Option(5000, "--commissions", help="Number of commissions in the month."),
    month: str = typer.Option(None, "--month", help="YYYY-MM, default last complete month"),
    seed: int = typer.Option(7, "--seed", help="Same seed, same files."),
    format: str = typer.Option("csv", "--format", help="csv or parquet"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output: the files and the summary."),
) -> None:
    """Write demo affiliates, commissions and order-events files for one month, and summarize them."""
    if format not in ("csv", "parquet"):
        raise typer.BadParameter("must be csv or parquet", param_hint="--format")
    try:
        files = write_demo_data(
            out,
            affiliates=affiliates,
            commissions=commissions,
            month=month or default_month(),
            seed=seed,
            file_format=format,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    summary = files.summary
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "affiliates": str(files.affiliates),
                    "commissions": str(files.commissions),
                    "order_events": str(files.order_events),
                    "seed": seed,
                    "format": format,
                    "summary": summary,
                },
                indent=2,
                default=str,
            )
        )
        return
    console.print(f"[bold]Demo data for {summary['month']}[/bold] (seed {seed}, {format})")
    for label, path in (
        ("affiliates", files.affiliates),
        ("commissions", files.commissions),
        ("order events", files.order_events),
    ):
        console.print(f"  {label:<13} {path}")

    table = Table(title="Per payout currency")
    for column in ("currency", "affiliates", "below minimum", "commissions", "gross", "reversed by events"):
        table.add_column(column, justify="left" if column == "currency" else "right", no_wrap=True)
    for currency, count in summary["affiliates_by_currency"].items():
        table.add_row(
            currency,
            str(count),
            str(summary["affiliates_below_minimum_by_currency"][currency]),
            str(summary["commissions_by_currency"][currency]),
            format_minor(summary["gross_minor_by_currency"][currency], currency),
            format_minor(summary["reversed_minor_by_currency"][currency], currency),
        )
    console.print(table)
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary["events_by_kind"].items())
    console.print(
        f"affiliates without a Stripe account: {summary['affiliates_without_account']}; "
        f"without commissions: {summary['affiliates_without_commissions']}"
    )
    console.print(
        f"order events: {summary['events']} ({kinds}); {summary['events_after_month']} arrive after the month ended"
    )
