"""`sorae-payouts batch ...`: review, export and approve a period's payout manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sorae_payouts.cli import program_option
from sorae_payouts.cli.refusals import RefusingTyper
from sorae_payouts.cli.tables import missing_batch_message, outcome_table
from sorae_payouts.core.csv_safe import SafeDictWriter
from sorae_payouts.core.money import format_minor, to_decimal
from sorae_payouts.core.periods import parse_period, period_key
from sorae_payouts.core.stripe_links import account_url, transfer_url
from sorae_payouts.execution.anomalies import list_anomalies
from sorae_payouts.execution.outcomes import batch_outcome, item_outcomes
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.month_end.approvals import MIN_HASH_PREFIX
from sorae_payouts.month_end.batches import BatchError, list_batches, load_batch
from sorae_payouts.month_end.manifest import owed_again_lines

app = RefusingTyper(help="Review, export and approve payout batches.", no_args_is_help=True)
console = Console()
PREVIEW_ROWS = 50
# Columns of the export this program computes as numbers: written as numbers (negatives stay numeric).
EXPORT_NUMERIC_COLUMNS = (
    "payout_item_id",
    "amount_minor",
    "period_amount_minor",
    "carried_in_minor",
    "commission_count",
    "attempt_number",
    "amount",
)


def _period(text: str):
    try:
        return parse_period(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _load(conn, period: str, program: str | None):
    """The program's batch of the period, or a clear message and exit code 1."""
    from sorae_payouts.registry.programs import ProgramError

    month = _period(period)
    try:
        return load_batch(conn, month, program_id=program_option.resolve_program(conn, program, month))
    except ProgramError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    except BatchError as exc:
        console.print(f"[red]{missing_batch_message(conn, month)}[/red]")  # says what exists instead
        raise typer.Exit(1) from exc


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    program: str = typer.Option(None, "--program", help="Only this program's batches (default: all)."),
    status: str = typer.Option(None, "--status", help="Only batches in this status, e.g. approved."),
    period_from: str = typer.Option(None, "--from", help="First month (YYYY-MM)."),
    period_to: str = typer.Option(None, "--to", help="Last month (YYYY-MM)."),
) -> None:
    """Batches of every program (or one), with their status and approval, oldest month first."""
    with create_ledger_engine().connect() as conn:
        batches = list_batches(
            conn,
            program,
            status=status,
            period_from=_period(period_from) if period_from else None,
            period_to=_period(period_to) if period_to else None,
        )
    if as_json:
        typer.echo(json.dumps([b.as_json() for b in batches], indent=2))
        return
    table = Table("period", "program", "batch", "status", "items", "manifest hash", "approved by")
    for b in batches:
        table.add_row(
            period_key(b.period),
            b.program_id,
            b.batch_id,
            b.status,
            str(b.item_count),
            b.manifest_hash[:16],
            b.approved_by or "",
        )
    console.print(table)


@app.command("show")
def show_command(
    period: str = typer.Argument(..., help="YYYY-MM"),
    as_json: bool = typer.Option(False, "--json", help="The batch and ALL its items as JSON."),
    program: str = program_option.option(),
) -> None:
    """The batch of a period and its items with their outcome (transfer id, error code); all items
    with --json, the totals and the first items otherwise."""
    with create_ledger_engine().connect() as conn:
        batch = _load(conn, period, program)
        items = list(item_outcomes(conn, batch.batch_id))
        outcome = batch_outcome(conn, batch.batch_id)
        anomalies = list_anomalies(conn, batch.batch_id)
        from sorae_payouts.aftercare.recovery import negative_balances  # imports the Stripe SDK

        negatives = negative_balances(conn, batch.batch_id)
        owed_again = owed_again_lines(conn, batch.batch_id)
    for item in items:  # dashboard links: plain URLs in JSON, clickable in the table below
        item["transfer_dashboard_url"] = transfer_url(item["stripe_transfer_id"])
        item["account_dashboard_url"] = account_url(item["stripe_account_id"])
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "batch": batch.as_json(),
                    "items": items,
                    "anomalies": anomalies,
                    "negative_balances": negatives,
                    "owed_again_carried_in": owed_again,
                },
                indent=2,
            )
        )
        return
    console.print(
        f"[bold]{batch.batch_id}[/bold] {batch.status}, {batch.item_count} items, manifest hash {batch.manifest_hash}"
    )
    console.print(outcome_table(outcome))
    table = Table("item", "affiliate", "currency", "amount", "status", "reason / error", "transfer", "account")
    for item in items[:PREVIEW_ROWS]:
        reason = item["carry_reason"] or item["hold_reason"] or item["error_code"] or item["unknown_reason"] or ""
        if item["reversed_minor"]:
            reason = (
                f"reversed {format_minor(item['reversed_minor'], item['currency'])}, reversal_pending "
                f"{format_minor(item['reversal_pending_minor'], item['currency'])}"
            )
        # Affiliate ids and reasons come from input files: plain text, never rich markup.
        table.add_row(
            str(item["payout_item_id"]),
            Text(item["affiliate_id"]),
            item["currency"],
            format_minor(item["amount_minor"], item["currency"]),
            item["outcome"],
            Text(reason),
            _linked(item["stripe_transfer_id"], item["transfer_dashboard_url"]),
            _linked(item["stripe_account_id"], item["account_dashboard_url"]) or "(not onboarded)",
        )
    console.print(table)
    if len(items) > PREVIEW_ROWS:
        console.print(f"... {len(items) - PREVIEW_ROWS} more items: use --json or `batch export`")
    if anomalies:  # what execution met that an operator must look at (docs/operations.md)
        console.print(f"[yellow]{len(anomalies)} execution anomalies[/yellow] (blocked items need an operator):")
        for a in anomalies[-PREVIEW_ROWS:]:
            console.print(
                f"  {a['recorded_at'][:19]} {a['kind']} item {a['payout_item_id'] or '-'} "
                f"{a['stripe_transfer_id'] or ''}: {a['detail']}",
                markup=False,
            )
    _print_money_after_transfer(batch, items, negatives, owed_again)


def _print_money_after_transfer(batch, items: list[dict], negatives: list[dict], owed_again: list[dict]) -> None:
    """Reversed money awaiting a decision, owed-again amounts carried in, affiliates in negative balance."""
    pending = [i for i in items if i["reversal_pending_minor"]]
    if pending:
        console.print(
            f"[yellow]reversal_pending[/yellow]: {len(pending)} item(s) await a decision "
            "(`sorae-payouts reversals list` / `reversals resolve ITEM_ID --owe-again|--write-off`): "
            + ", ".join(
                f"{i['payout_item_id']} {i['affiliate_id']} {format_minor(i['reversal_pending_minor'], i['currency'])}"
                for i in pending[:20]
            )
        )
    for line in owed_again[:PREVIEW_ROWS]:
        console.print(
            f"carried in {line['affiliate_id']} {format_minor(line['amount_minor'], line['currency'])}: {line['why']}",
            markup=False,
        )
    if negatives:
        policy = batch.policy.get("negative_balance", "carry")
        table = Table(
            "affiliate",
            "currency",
            "balance",
            "months carried",
            "since",
            title=f"Negative balances ({len(negatives)}; policy {policy})",
        )
        for n in negatives[:PREVIEW_ROWS]:
            table.add_row(
                Text(n["affiliate_id"]),
                n["currency"],
                format_minor(n["amount_minor"], n["currency"]),
                str(n["months_carried"]),
                n["since"],
            )
        console.print(table)


def _linked(text: str | None, url: str | None) -> Text | str:
    """A terminal hyperlink (OSC 8, where the terminal supports it; plain text otherwise). A styled
    Text, never markup: account ids come from input files."""
    return Text(text, style=f"link {url}") if text and url else (text or "")


@app.command("export")
def export_command(
    period: str = typer.Argument(..., help="YYYY-MM"),
    csv_path: Path = typer.Option(..., "--csv", help="Where to write the full manifest."),
    program: str = program_option.option(),
) -> None:
    """Write the full manifest of a program's month to CSV (amounts in minor units and exact major units)."""
    with create_ledger_engine().connect() as conn:
        batch = _load(conn, period, program)
        count = 0
        with csv_path.open("w", newline="") as handle:
            writer = None
            for item in item_outcomes(conn, batch.batch_id):
                row = {
                    "program_id": batch.program_id,
                    "batch_id": batch.batch_id,
                    "period": period_key(batch.period),
                    **item,
                    "amount": str(to_decimal(item["amount_minor"], item["currency"])),
                    "transfer_dashboard_url": transfer_url(item["stripe_transfer_id"]) or "",
                    "account_dashboard_url": account_url(item["stripe_account_id"]) or "",
                }
                if writer is None:
                    # Affiliate ids, names and reasons come from input files: no formula may reach a spreadsheet.
                    writer = SafeDictWriter(handle, list(row), numeric=EXPORT_NUMERIC_COLUMNS)
                    writer.writeheader()
                writer.writerow(row)
                count += 1
    console.print(
        f"wrote {count} items of {batch.batch_id} ({batch.status}, hash {batch.manifest_hash[:16]}) to {csv_path}"
    )


_BY_HELP = "Optional check: who you are; refused unless it is the operator of the key in SORAE_OPERATOR_KEY."
_HASH_HELP = f"The manifest hash you reviewed (at least {MIN_HASH_PREFIX} hex characters)."


def _signed(period: str, program: str | None, manifest_hash: str, by: str | None):
    from sorae_payouts.month_end.approvals import sign_approval
    from sorae_payouts.registry.operator_keys import load_operator_key

    engine = create_ledger_engine()
    with engine.connect() as conn:
        program_id = program_option.resolve_program(conn, program, _period(period))
    key = load_operator_key()
    now = datetime.now(UTC)
    signed = sign_approval(
        engine, _period(period), key=key, now=now, expected_hash=manifest_hash, program_id=program_id, acting_as=by
    )
    return engine, program_id, signed, now


@app.command("approve")
def approve_command(
    period: str = typer.Argument(..., help="YYYY-MM"),
    manifest_hash: str = typer.Option(..., "--hash", help=_HASH_HELP),
    program: str = program_option.option(),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Approve a draft batch as the operator whose key is in SORAE_OPERATOR_KEY: the approval is signed
    with it (large batches need two different operators). Records who, when and from where (host, OS
    user). Once fully approved, the manifest is frozen and can be executed."""
    from sorae_payouts.month_end.approvals import record_signed_approval

    engine, program_id, signed, now = _signed(period, program, manifest_hash, by)
    approval = record_signed_approval(engine, _period(period), signed, now=now, program_id=program_id)
    batch = approval.batch
    if not approval.complete:
        console.print(
            f"[yellow]approval recorded[/yellow] for {batch.batch_id} by {signed.operator}: "
            f"{len(approval.approvers)} of {approval.required} approvals (another operator must approve "
            f"hash {batch.manifest_hash[:16]})"
        )
        return
    console.print(
        f"[green]approved[/green] {batch.batch_id} by {batch.approved_by} at "
        f"{batch.approved_at:%Y-%m-%d %H:%M} UTC, manifest hash {batch.manifest_hash}"
    )


@app.command("sign")
def sign_command(
    period: str = typer.Argument(..., help="YYYY-MM"),
    manifest_hash: str = typer.Option(..., "--hash", help=_HASH_HELP),
    program: str = program_option.option(),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Sign your approval WITHOUT recording it: prints the run config of Dagster's approve_batch_job
    (the webserver has no login: it records only approvals signed here). The signature is not a secret:
    it approves this manifest hash of this batch and nothing else."""
    _, program_id, signed, _ = _signed(period, program, manifest_hash, by)
    config = {"period": period_key(_period(period)), "program": program_id, **signed.as_run_config()}
    typer.echo(json.dumps({"ops": {"approve_batch_op": {"config": config}}}, indent=2))
