"""`sorae-payouts month-end PERIOD` and `sorae-payouts batch execute PERIOD`: the same Dagster jobs
the UI and the schedule run, launched through the instance with the code location (so each run shows
under its job and its asset partitions), awaited, then summarized as the outcome table.

No daemon is needed: the run goes straight to the instance's run launcher (see `defs/launching.py`).
The instance is DAGSTER_HOME, else ./data/dagster_home (the one `dagster dev` is pointed at in the README).
"""

from __future__ import annotations

import json

import typer
from rich.console import Console

from sorae_payouts.batches import BatchError, load_batch
from sorae_payouts.cli.tables import missing_batch_message, outcome_json, outcome_table
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.manifest import batch_id_for
from sorae_payouts.month_order import MonthOrderError, check_month_end_order
from sorae_payouts.periods import parse_period, period_key

console = Console()


def _period(text: str):
    try:
        return parse_period(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _launch(job_name: str, period, tags: dict, as_json: bool):
    from sorae_payouts.defs.launching import launch_and_wait  # Dagster is imported only to launch

    def progress(status: str) -> None:
        if not as_json:
            console.print(f"{job_name} [{period_key(period)}]: {status.lower()}")

    return launch_and_wait(job_name, period.isoformat(), tags=tags, on_status=progress)


def _report(engine, period, run, as_json: bool) -> None:
    from sorae_payouts.execution.outcomes import batch_outcome

    with engine.connect() as conn:
        try:
            outcome = batch_outcome(conn, batch_id_for(period))
        except Exception:  # noqa: BLE001 - no batch (e.g. the run was refused): the run says why
            outcome = None
    if as_json:
        typer.echo(json.dumps({"run": run.as_json(), "outcome": outcome_json(outcome) if outcome else None}, indent=2))
    else:
        colour = "green" if run.success else "red"
        console.print(f"run {run.run_id} ({run.job_name}, {run.partition}): [{colour}]{run.status}[/]")
        for failure in run.failures:
            console.print(f"[red]{failure}[/red]")
        for check_name, passed in sorted(run.checks.items()):
            console.print(f"check {check_name}: " + ("[green]passed[/]" if passed else "[red]FAILED[/]"))
        if outcome is not None:
            console.print(outcome_table(outcome))
    if not run.success:
        raise typer.Exit(1)


def month_end(period: str = typer.Argument(..., help="YYYY-MM"),
              as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Finalize the month and build its manifest (month_end_job, with the blocking checks): a draft to
    review and approve. Refused before anything is written when months must be closed in another order."""
    month = _period(period)
    engine = create_ledger_engine()
    with engine.connect() as conn:
        try:
            check_month_end_order(conn, [month])
        except MonthOrderError as exc:
            if as_json:
                typer.echo(json.dumps({"run": None, "refused": str(exc)}, indent=2))
            else:
                console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    _report(engine, month, _launch("month_end_job", month, {"sorae/batch_id": batch_id_for(month)}, as_json), as_json)


def execute(period: str = typer.Argument(..., help="YYYY-MM"),
            as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Pay an APPROVED batch (payout_execution_job): only pending items are sent, never twice."""
    month = _period(period)
    engine = create_ledger_engine()
    with engine.connect() as conn:
        try:
            batch = load_batch(conn, month)
        except BatchError as exc:
            console.print(f"[red]{missing_batch_message(conn, month)}[/red]")
            raise typer.Exit(1) from exc
    tags = {"sorae/batch_id": batch.batch_id, "sorae/manifest_hash": batch.manifest_hash}
    _report(engine, month, _launch("payout_execution_job", month, tags, as_json), as_json)
