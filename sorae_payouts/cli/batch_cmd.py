"""`sorae-payouts batch ...`: review, export and approve a period's payout manifest."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sorae_payouts.batches import BatchError, approve_batch, list_batches, load_batch
from sorae_payouts.cli.tables import missing_batch_message, outcome_table
from sorae_payouts.execution.outcomes import batch_outcome, item_outcomes
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.money import format_minor, to_decimal
from sorae_payouts.periods import parse_period, period_key
from sorae_payouts.stripe_links import account_url, transfer_url

app = typer.Typer(help="Review, export and approve payout batches.", no_args_is_help=True)
console = Console()
PREVIEW_ROWS = 50


def _period(text: str):
    try:
        return parse_period(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _load(conn, period: str):
    """The period's batch, or a clear message and exit code 1."""
    month = _period(period)
    try:
        return load_batch(conn, month)
    except BatchError as exc:
        console.print(f"[red]{missing_batch_message(conn, month)}[/red]")  # says what exists instead
        raise typer.Exit(1) from exc


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """All batches with their status and approval."""
    with create_ledger_engine().connect() as conn:
        batches = list_batches(conn)
    if as_json:
        typer.echo(json.dumps([b.as_json() for b in batches], indent=2))
        return
    table = Table("period", "batch", "status", "items", "manifest hash", "approved by")
    for b in batches:
        table.add_row(period_key(b.period), b.batch_id, b.status, str(b.item_count), b.manifest_hash[:16],
                      b.approved_by or "")
    console.print(table)


@app.command("show")
def show_command(period: str = typer.Argument(..., help="YYYY-MM"),
                 as_json: bool = typer.Option(False, "--json", help="The batch and ALL its items as JSON.")) -> None:
    """The batch of a period and its items with their outcome (transfer id, error code); all items
    with --json, the totals and the first items otherwise."""
    with create_ledger_engine().connect() as conn:
        batch = _load(conn, period)
        items = list(item_outcomes(conn, batch.batch_id))
        outcome = batch_outcome(conn, batch.batch_id)
    for item in items:  # dashboard links: plain URLs in JSON, clickable in the table below
        item["transfer_dashboard_url"] = transfer_url(item["stripe_transfer_id"])
        item["account_dashboard_url"] = account_url(item["stripe_account_id"])
    if as_json:
        typer.echo(json.dumps({"batch": batch.as_json(), "items": items}, indent=2))
        return
    console.print(f"[bold]{batch.batch_id}[/bold] {batch.status}, {batch.item_count} items, "
                  f"manifest hash {batch.manifest_hash}")
    console.print(outcome_table(outcome))
    table = Table("item", "affiliate", "currency", "amount", "status", "reason / error", "transfer", "account")
    for item in items[:PREVIEW_ROWS]:
        reason = item["carry_reason"] or item["hold_reason"] or item["error_code"] or item["unknown_reason"] or ""
        table.add_row(str(item["payout_item_id"]), item["affiliate_id"], item["currency"],
                      format_minor(item["amount_minor"], item["currency"]), item["outcome"], reason,
                      _linked(item["stripe_transfer_id"], item["transfer_dashboard_url"]),
                      _linked(item["stripe_account_id"], item["account_dashboard_url"]) or "(not onboarded)")
    console.print(table)
    if len(items) > PREVIEW_ROWS:
        console.print(f"... {len(items) - PREVIEW_ROWS} more items: use --json or `batch export`")


def _linked(text: str | None, url: str | None) -> str:
    """A terminal hyperlink (OSC 8, where the terminal supports it; plain text otherwise)."""
    return f"[link={url}]{text}[/link]" if text and url else (text or "")


@app.command("export")
def export_command(period: str = typer.Argument(..., help="YYYY-MM"),
                   csv_path: Path = typer.Option(..., "--csv", help="Where to write the full manifest.")) -> None:
    """Write the full manifest of a period to CSV (amounts in minor units and exact major units)."""
    with create_ledger_engine().connect() as conn:
        batch = _load(conn, period)
        count = 0
        with csv_path.open("w", newline="") as handle:
            writer = None
            for item in item_outcomes(conn, batch.batch_id):
                row = {"batch_id": batch.batch_id, "period": period_key(batch.period), **item,
                       "amount": str(to_decimal(item["amount_minor"], item["currency"])),
                       "transfer_dashboard_url": transfer_url(item["stripe_transfer_id"]) or "",
                       "account_dashboard_url": account_url(item["stripe_account_id"]) or ""}
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                count += 1
    console.print(f"wrote {count} items of {batch.batch_id} ({batch.status}, hash {batch.manifest_hash[:16]}) "
                  f"to {csv_path}")


@app.command("approve")
def approve_command(period: str = typer.Argument(..., help="YYYY-MM"),
                    by: str = typer.Option(..., "--by", help="Who approves (recorded with the hash)."),
                    manifest_hash: str = typer.Option(None, "--hash", help="The hash you reviewed (prefix ok).")) -> None:
    """Approve a draft batch (one person's approval; large batches need two people). Once fully
    approved, the manifest is frozen and can be executed."""
    try:
        approval = approve_batch(create_ledger_engine(), _period(period), approved_by=by,
                                 now=datetime.now(timezone.utc), expected_hash=manifest_hash)
    except BatchError as exc:
        console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(1) from exc
    batch = approval.batch
    if not approval.complete:
        console.print(f"[yellow]approval recorded[/yellow] for {batch.batch_id} by {by}: "
                      f"{len(approval.approvers)} of {approval.required} approvals (a second person must approve "
                      f"hash {batch.manifest_hash[:16]})")
        return
    console.print(f"[green]approved[/green] {batch.batch_id} by {batch.approved_by} at "
                  f"{batch.approved_at:%Y-%m-%d %H:%M} UTC, manifest hash {batch.manifest_hash}")
