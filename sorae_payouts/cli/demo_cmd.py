"""`sorae-payouts demo`: a whole month end to end on the embedded defaults, in one command.

Starts the local Stripe sandbox (unless STRIPE_API_KEY is set: then the test-mode Stripe or mock at
STRIPE_API_BASE; a live key or real Stripe is refused outright),
creates demo connected accounts, writes and imports a demo data set, runs the Dagster month-end job
(finalize + manifest + checks), approves the batch (demo only: in production a person reviews it),
runs the execution job and prints the batch summary. Runs land in a local Dagster home that
`dagster dev` shares. Re-running it changes nothing that is already done.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import stripe
import typer
from rich.console import Console

from sorae_payouts.approvals import approve_batch
from sorae_payouts.batches import BatchError, load_batch
from sorae_payouts.operators import ensure_operator
from sorae_payouts.cli.tables import outcome_table
from sorae_payouts.demo_accounts import ensure_demo_accounts
from sorae_payouts.demo_data import write_demo_data
from sorae_payouts.execution.outcomes import batch_outcome
from sorae_payouts.ingest import ImportKind, import_file
from sorae_payouts.ledger.database import create_ledger_engine, data_dir, database_url, redact, upgrade
from sorae_payouts.manifest import batch_id_for
from sorae_payouts.finalize import DEFAULT_HOLDING_DAYS
from sorae_payouts.periods import finalizable_at, parse_period
from sorae_payouts.stripe_gateway import demo_refusal

console = Console()
SANDBOX_KEY = "sk_test_sorae_demo"
SANDBOX_BALANCES = {"usd": 100_000_000_00, "eur": 100_000_000_00, "jpy": 10_000_000_000}


def latest_finalizable_month(now: datetime, holding_days: int = DEFAULT_HOLDING_DAYS) -> str:
    """The most recent month whose holding window has passed at `now` ("YYYY-MM")."""
    year, month = now.year, now.month
    while True:
        month, year = (month - 1, year) if month > 1 else (12, year - 1)
        if finalizable_at(parse_period(f"{year}-{month:02d}"), holding_days) <= now:
            return f"{year:04d}-{month:02d}"


def _start_sandbox_if_needed():
    """Use the Stripe named by STRIPE_API_KEY/STRIPE_API_BASE, else start the sandbox in-process.
    Never a live key, never real Stripe: the demo approves its own batch."""
    if os.environ.get("STRIPE_API_KEY"):
        refusal = demo_refusal(os.environ["STRIPE_API_KEY"], os.environ.get("STRIPE_API_BASE"))
        if refusal:
            console.print(f"[red]demo refused: {refusal}; nothing was done[/red]")
            raise typer.Exit(1)
        return None
    from sorae_payouts.sandbox import SandboxServer

    server = SandboxServer(port=0, state_path=str(data_dir() / "sandbox.sqlite3"), balances=SANDBOX_BALANCES).start()
    os.environ["STRIPE_API_KEY"], os.environ["STRIPE_API_BASE"] = SANDBOX_KEY, server.url
    console.print(f"Stripe: local sandbox at {server.url} (state in {data_dir() / 'sandbox.sqlite3'})")
    return server


def demo(
    month: str = typer.Option(None, "--month", help="YYYY-MM; default: the latest month ready to finalize."),
    affiliates: int = typer.Option(200, "--affiliates"),
    commissions: int = typer.Option(5_000, "--commissions"),
) -> None:
    """Run a demo month end to end: import, finalize, manifest, approve, pay, summarize."""
    sandbox = _start_sandbox_if_needed()  # first: a refused Stripe leaves nothing behind
    month = month or latest_finalizable_month(datetime.now(timezone.utc))
    try:
        _demo(month, affiliates, commissions)
    finally:
        if sandbox is not None:
            sandbox.stop()


DEMO_OPERATORS = ("demo-approver-1@sorae.example", "demo-approver-2@sorae.example")


def _demo(month: str, affiliates: int, commissions: int) -> None:
    from sorae_payouts.definitions import defs  # after the Stripe environment is set
    from sorae_payouts.defs.instance import local_instance

    engine = create_ledger_engine()
    upgrade(engine)
    console.print(f"ledger: {redact(database_url())}")
    files = write_demo_data(data_dir() / "demo" / month, affiliates=affiliates, commissions=commissions, month=month)
    client = stripe.StripeClient(os.environ["STRIPE_API_KEY"],
                                 base_addresses={"api": os.environ["STRIPE_API_BASE"]}
                                 if os.environ.get("STRIPE_API_BASE") else None)
    created = ensure_demo_accounts(client, Path(files.affiliates))
    console.print(f"connected accounts: {created} created")
    for kind, path in ((ImportKind.AFFILIATES, files.affiliates), (ImportKind.COMMISSIONS, files.commissions),
                       (ImportKind.ORDER_EVENTS, files.order_events)):
        report = import_file(engine, kind, Path(path))
        console.print(f"import {kind.value}: {report.rows_read} read, {report.inserted} inserted, "
                      f"{report.updated} updated, {report.already_present} already present, "
                      f"{report.rejected_count} rejected")
    instance = local_instance(data_dir())
    partition = f"{month}-01"
    from sorae_payouts.defs.launching import code_location_workspace

    with code_location_workspace(instance) as workspace:  # one code server for both runs
        _close_and_pay(defs, engine, partition, instance, workspace)
    _print_batch(engine, partition)
    console.print(f"Dagster runs are in {instance.root_directory}; open them with "
                  f"`DAGSTER_HOME={instance.root_directory} dagster dev`")


def _close_and_pay(defs, engine, partition: str, instance, workspace) -> None:
    _run(defs, "month_end_job", partition, instance, workspace)
    try:  # demo only: in production registered operators review the manifest and approve it (two above a limit)
        with engine.connect() as conn:
            reviewed = load_batch(conn, parse_period(partition)).manifest_hash
        for number, approver in enumerate(DEMO_OPERATORS, 1):
            ensure_operator(engine, approver, added_by="demo", now=datetime.now(timezone.utc),
                            display_name=f"Demo approver {number}")
            if approve_batch(engine, parse_period(partition), approved_by=approver, now=datetime.now(timezone.utc),
                             expected_hash=reviewed).complete:
                break
        console.print("batch approved (demo only: in production operators review and approve it)")
    except BatchError as exc:
        console.print(f"approval: {exc}")
    with engine.connect() as conn:
        approved_hash = load_batch(conn, parse_period(partition)).manifest_hash
    _run(defs, "payout_execution_job", partition, instance, workspace, {"sorae/manifest_hash": approved_hash})


def _run(defs, job_name: str, partition: str, instance, workspace=None, tags: dict | None = None) -> None:
    # Through the instance with the code location (not execute_in_process): the run shows under its
    # job and the asset partitions in the UI, tagged with the operator (see defs/launching.py).
    from sorae_payouts.defs.launching import launch_and_wait

    run = launch_and_wait(job_name, partition, instance=instance, workspace=workspace, tags={
        "sorae/batch_id": batch_id_for(parse_period(partition)), "sorae/operator": "demo", **(tags or {})})
    for check_name, passed in sorted(run.checks.items()):
        colour = "green" if passed else "red"
        console.print(f"check {check_name}: [{colour}]{'passed' if passed else 'FAILED'}[/]")
    if not run.success:
        for failure in run.failures:
            console.print(f"[red]{failure}[/red]")
        raise typer.Exit(1)
    console.print(f"{job_name} [{partition}]: [green]success[/green] (run {run.run_id[:8]})")


def _print_batch(engine, partition: str) -> None:
    with engine.connect() as conn:
        console.print(outcome_table(batch_outcome(conn, batch_id_for(parse_period(partition)))))
    console.print(f"item details: `sorae-payouts batch show {partition[:7]}`")
