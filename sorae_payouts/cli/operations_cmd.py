"""`sorae-payouts retry | refresh | reconcile`: operators' controls after execution, on the use cases
(`sorae_payouts/use_cases/`) the Dagster jobs run too."""

from __future__ import annotations

import getpass
import json
import os

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sorae_payouts.cli import program_option
from sorae_payouts.cli.refusals import refusals_exit
from sorae_payouts.cli.tables import outcome_json, outcome_table
from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import ProgramMonth, parse_period
from sorae_payouts.execution.anomalies import list_anomalies
from sorae_payouts.execution.pay_batch import ExecutionRefused, utcnow
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.month_end.batches import load_batch
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.stripe_gateway.gateway import config_from_environment
from sorae_payouts.use_cases import aftercare, payouts

console = Console()


def _gateways(engine) -> ProgramGateways:
    """Every program's gateway (the platform key or its own), on its account's rate schedule in this ledger."""
    return ProgramGateways(config_from_environment(), engine)


def _program(engine, program: str | None, period: str | None) -> str:
    with engine.connect() as conn:
        return program_option.resolve_program(conn, program, parse_period(period) if period else None)


def _announce(message: str) -> None:
    """What a live run says before it pays (account, batch, totals)."""
    console.print(f"[bold yellow]{message}[/bold yellow]")


def retry(
    period: str = typer.Argument(..., help="YYYY-MM"),
    item: list[int] = typer.Option(None, "--item", help="Payout item id to retry (repeatable)."),
    error_code: str = typer.Option(None, "--error-code", help="Retry the failed items with this Stripe error code."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print exactly which transfers would be sent; change nothing."
    ),
    as_json: bool = typer.Option(False, "--json"),
    program: str = program_option.option(),
) -> None:
    """Retry failed items in isolation: each gets a NEW attempt (new idempotency key); only they are sent."""
    engine = create_ledger_engine()
    program_id = _program(engine, program, period)
    # The next keys name the paying account: ask Stripe when a key is configured (a dry run works without).
    gateways = _gateways(engine) if (os.environ.get("STRIPE_API_KEY") or not dry_run) else None
    request = payouts.plan_retry_of(
        engine, gateways, parse_period(period), program_id, item_ids=item or None, error_code=error_code
    )
    plan = request.plan
    sends = [
        {
            "payout_item_id": i["payout_item_id"],
            "affiliate_id": i["affiliate_id"],
            "amount_minor": i["amount_minor"],
            "currency": i["currency"],
            "destination": i["stripe_account_id"],
            "last_error_code": i["error_code"],
            "idempotency_key": i["next_idempotency_key"],
        }
        for i in plan.retry
    ]
    if as_json and (dry_run or not sends):
        typer.echo(json.dumps({"would_send": sends if dry_run else [], "refused": plan.refused}, indent=2))
        raise typer.Exit(1 if plan.refused and not sends else 0)
    if as_json:
        try:
            report = payouts.send_retry(engine, request, now=utcnow(), requested_by=f"cli:{getpass.getuser()}")
        except ExecutionRefused as exc:
            typer.echo(json.dumps({"sent": sends, "refused": plan.refused, "error": str(exc)}, indent=2))
            raise typer.Exit(1) from exc
        typer.echo(
            json.dumps({"sent": sends, "refused": plan.refused, "outcome": outcome_json(report.outcome)}, indent=2)
        )
        return
    table = Table(
        "item",
        "affiliate",
        "amount",
        "destination",
        "last error",
        "new idempotency key",
        title=f"{'would send' if dry_run else 'retrying'} ({len(sends)})",
    )
    for s in sends:
        table.add_row(
            str(s["payout_item_id"]),
            s["affiliate_id"],
            format_minor(s["amount_minor"], s["currency"]),
            s["destination"],
            s["last_error_code"] or "",
            s["idempotency_key"],
        )
    console.print(table)
    for refused in plan.refused:
        console.print(f"[yellow]refused[/yellow] item {refused['payout_item_id']}: {refused['reason']}")
    if dry_run or not sends:
        raise typer.Exit(1 if plan.refused and not sends else 0)
    report = payouts.send_retry(
        engine, request, now=utcnow(), announce=_announce, requested_by=f"cli:{getpass.getuser()}"
    )
    console.print(outcome_table(report.outcome))


def refresh(
    period: str = typer.Argument(None, help="YYYY-MM; default: every executed batch"),
    as_json: bool = typer.Option(False, "--json"),
    program: str = typer.Option(None, "--program", help="Only this program (default: every program)."),
) -> None:
    """Resolve unknown outcomes, record reversals and account readiness changes (appended history), for
    every executed batch of every program (or the one named), each through its paying account."""
    engine = create_ledger_engine()
    with engine.connect() as conn:
        program_ids = [program_option.resolve_program(conn, program)] if program else None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as progress:
        task = progress.add_task("refreshing batches", total=None)
        run = aftercare.refresh_programs(
            engine,
            _gateways(engine),
            period=parse_period(period) if period else None,
            program_ids=program_ids,
            announce=_announce,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    reports = list(run.reports.values())
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in reports], indent=2))
        for pm, why in run.refused.items():  # the list stays the reports; refusals go to stderr
            typer.echo(f"refused: {pm}: {why}", err=True)
        if run.refused:
            raise typer.Exit(1)
        return
    table = Table("batch", "resolved", "still unknown", "reversal changes", "account changes", "holds released")
    for r in reports:
        table.add_row(
            r.batch_id,
            str(r.resolved),
            str(r.still_unknown),
            str(len(r.reversal_changes)),
            str(len(r.account_changes)),
            str(r.released_holds),
        )
    console.print(table)
    # One program's refusal never stops the others; the exit code says some were refused.
    for pm, why in run.refused.items():
        console.print(f"[red]refused:[/red] {pm}: {why}", highlight=False)
    if run.refused:
        raise typer.Exit(1)


def reconcile(
    period: str = typer.Argument(..., help="YYYY-MM"),
    as_json: bool = typer.Option(False, "--json"),
    program: str = program_option.option(),
) -> None:
    """Compare the program's batch's transfers in Stripe (its paying account) with the ledger's posted
    attempts; exit 1 on drift. Also lists the execution anomalies recorded for the batch."""
    engine = create_ledger_engine()
    program_id = _program(engine, program, period)
    result = aftercare.reconcile(engine, _gateways(engine), ProgramMonth(parse_period(period), program_id))
    with engine.connect() as conn:
        anomalies = list_anomalies(conn, load_batch(conn, parse_period(period), program_id=program_id).batch_id)
    if as_json:
        typer.echo(
            json.dumps(
                {"passed": result.passed, "summary": result.summary, "drift": result.rows, "anomalies": anomalies},
                indent=2,
            )
        )
    else:
        if anomalies:
            table = Table(
                "recorded", "kind", "item", "transfer", "detail", title=f"execution anomalies ({len(anomalies)})"
            )
            for a in anomalies:
                table.add_row(
                    a["recorded_at"][:19],
                    a["kind"],
                    str(a["payout_item_id"] or ""),
                    a["stripe_transfer_id"] or "",
                    a["detail"],
                )
            console.print(table)
        console.print(("[green]" if result.passed else "[red]") + result.summary + "[/]")
        if result.rows:
            table = Table(*result.rows[0].keys())
            for row in result.rows:
                table.add_row(*(str(v) for v in row.values()))
            console.print(table)
    if not result.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """The three commands on another Typer app (tests), with the CLI's refusal handling."""
    for name, command in (("retry", retry), ("refresh", refresh), ("reconcile", reconcile)):
        app.command(name)(refusals_exit(command))
