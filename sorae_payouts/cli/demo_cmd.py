"""`sorae-payouts demo`: a month of three merchants' programs end to end, in one command.

Starts the local Stripe sandbox (unless STRIPE_API_KEY is set: then the test-mode Stripe or mock at
STRIPE_API_BASE; a live key or real Stripe is refused outright) with a second platform account for the
merchant that pays from its own Stripe account, registers the three demo programs (`demo_programs`:
acme and bolt on the platform account, cobalt on its own), writes and imports each program's demo files
(the same affiliate ids in all three, kept apart), creates their connected accounts on the account that
pays them, runs the Dagster month-end job for each program's month (finalize + manifest + checks),
approves each batch with two demo operators whose keys it generates into data/demo-operator-keys (demo
only: in production each person holds their own key and reviews the batch), funds acme fully and bolt by half
with Stripe charges, runs the execution job for each program's month and prints each batch: acme and
cobalt are paid, bolt is refused alone for lack of funds and nothing of it is sent. Runs land in a local
Dagster home that `dagster dev` shares. Re-running it changes nothing that is already done.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import stripe
import typer
from rich.console import Console

from sorae_payouts.cli.tables import outcome_table
from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.periods import finalizable_at, parse_period
from sorae_payouts.demo.accounts import ensure_demo_accounts
from sorae_payouts.demo.data import write_demo_data
from sorae_payouts.demo.operators import demo_operator_keys
from sorae_payouts.demo.programs import COBALT_KEY_SETTING, DEMO_PROGRAMS, ensure_demo_programs, fund_demo_program
from sorae_payouts.execution.outcomes import batch_outcome
from sorae_payouts.ingest import ImportKind, import_file
from sorae_payouts.ledger.database import create_ledger_engine, data_dir, database_url, redact, upgrade
from sorae_payouts.month_end.approvals import approve_batch
from sorae_payouts.month_end.batches import load_batch
from sorae_payouts.month_end.finalize import DEFAULT_HOLDING_DAYS
from sorae_payouts.month_end.manifest import batch_id_for
from sorae_payouts.registry.programs import get_program
from sorae_payouts.stripe_gateway import demo_refusal

console = Console()
SANDBOX_KEY = "sk_test_sorae_demo"
COBALT_SANDBOX_KEY = "sk_test_sorae_demo_cobalt"
SANDBOX_BALANCES = {"usd": 100_000_000_00, "eur": 100_000_000_00, "jpy": 10_000_000_000}
# The platform account holds no spare money of its own in the demo: acme and bolt pay with their charges.
PLATFORM_BALANCES = {"usd": 0, "eur": 0, "jpy": 0}


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
        refusal = refusal or (
            None
            if os.environ.get(COBALT_KEY_SETTING)
            else f"{COBALT_KEY_SETTING} must name the test key of cobalt's own Stripe account"
        )
        refusal = refusal or demo_refusal(os.environ.get(COBALT_KEY_SETTING, ""), os.environ.get("STRIPE_API_BASE"))
        if refusal:
            console.print(f"[red]demo refused: {refusal}; nothing was done[/red]")
            raise typer.Exit(1)
        return None
    from sorae_sandbox import SandboxServer

    server = SandboxServer(
        port=0,
        state_path=str(data_dir() / "sandbox.sqlite3"),
        balances=PLATFORM_BALANCES,
        api_keys=[SANDBOX_KEY],
        platforms={COBALT_SANDBOX_KEY: SANDBOX_BALANCES},
    ).start()
    os.environ["STRIPE_API_KEY"], os.environ["STRIPE_API_BASE"] = SANDBOX_KEY, server.url
    os.environ[COBALT_KEY_SETTING] = COBALT_SANDBOX_KEY
    console.print(f"Stripe: local sandbox at {server.url} (state in {data_dir() / 'sandbox.sqlite3'})")
    return server


def demo(
    month: str = typer.Option(None, "--month", help="YYYY-MM; default: the latest month ready to finalize."),
    affiliates: int = typer.Option(200, "--affiliates"),
    commissions: int = typer.Option(5_000, "--commissions"),
) -> None:
    """Run a demo month end to end: import, finalize, manifest, approve, pay, summarize."""
    sandbox = _start_sandbox_if_needed()  # first: a refused Stripe leaves nothing behind
    month = month or latest_finalizable_month(datetime.now(UTC))
    try:
        _demo(month, affiliates, commissions)
    finally:
        if sandbox is not None:
            sandbox.stop()


PROGRAM_IDS = [p.program_id for p in DEMO_PROGRAMS]


def _client(api_key: str) -> stripe.StripeClient:
    base = os.environ.get("STRIPE_API_BASE")
    return stripe.StripeClient(api_key, base_addresses={"api": base} if base else None)


def _demo(month: str, affiliates: int, commissions: int) -> None:
    from sorae_payouts.definitions import defs  # noqa: F401 - after the Stripe environment is set
    from sorae_payouts.instance.launching import code_location_workspace
    from sorae_payouts.instance.local import local_instance

    engine = create_ledger_engine()
    upgrade(engine)
    console.print(f"ledger: {redact(database_url())}")
    now = datetime.now(UTC)
    added = ensure_demo_programs(engine, now=now)
    console.print(f"programs: {', '.join(PROGRAM_IDS)}" + (f" ({', '.join(added)} registered)" if added else ""))
    for demo in DEMO_PROGRAMS:
        _import_program(engine, demo, month, affiliates, commissions)
    instance = local_instance(data_dir())
    with code_location_workspace(instance) as workspace:  # one code server for both runs
        _run("month_end_job", month, instance, workspace)
        _approve_and_fund(engine, month, now)
        _run("payout_execution_job", month, instance, workspace, expect_refusals=True)
    for program_id in PROGRAM_IDS:
        _print_batch(engine, month, program_id)
    console.print(
        f"Dagster runs are in {instance.root_directory}; open them with "
        f"`DAGSTER_HOME={instance.root_directory} dagster dev`"
    )


def _key_of(demo) -> str:
    return os.environ[COBALT_KEY_SETTING] if demo.paying_account_ref else os.environ["STRIPE_API_KEY"]


def _import_program(engine, demo, month: str, affiliates: int, commissions: int) -> None:
    files = write_demo_data(
        data_dir() / "demo" / month / demo.program_id,
        affiliates=affiliates,
        commissions=commissions,
        month=month,
        seed=demo.seed,
        program_id=demo.program_id,
    )
    created = ensure_demo_accounts(_client(_key_of(demo)), Path(files.affiliates))
    reports = [
        import_file(engine, kind, Path(path))
        for kind, path in (
            (ImportKind.AFFILIATES, files.affiliates),
            (ImportKind.COMMISSIONS, files.commissions),
            (ImportKind.ORDER_EVENTS, files.order_events),
        )
    ]
    console.print(
        f"{demo.program_id}: {created} connected accounts created; imported "
        + ", ".join(f"{r.inserted} {k}" for r, k in zip(reports, ("affiliates", "commissions", "events"), strict=False))
    )


def _approve_and_fund(engine, month: str, now: datetime) -> None:
    from sorae_payouts.registry.paying_accounts import ProgramGateways
    from sorae_payouts.stripe_gateway.gateway import config_from_environment

    period = parse_period(month)
    gateways = ProgramGateways(config_from_environment())  # the demo's few requests: in-process limiter
    for demo in DEMO_PROGRAMS:
        try:  # demo only: in production the program's registered operators review and approve it
            keys = demo_operator_keys(engine, demo.program_id, data_dir() / "demo-operator-keys", now=now)
            with engine.connect() as conn:
                reviewed = load_batch(conn, period, program_id=demo.program_id).manifest_hash
            for key in keys:
                if approve_batch(
                    engine, period, key=key, now=now, expected_hash=reviewed, program_id=demo.program_id
                ).complete:
                    break
            console.print(f"{demo.program_id}: batch approved (demo only, signed with the keys in data/)")
        except PayoutRefused as exc:
            console.print(f"{demo.program_id}: approval: {exc}")
        with engine.connect() as conn:
            gateway = gateways.for_program(get_program(conn, demo.program_id))
        charges = fund_demo_program(
            engine, _client(_key_of(demo)), gateway, demo, batch_id_for(period, demo.program_id), now=now
        )
        if charges:
            share = "all" if demo.funded_share == (1, 1) else "half"
            console.print(f"{demo.program_id}: funded with {len(charges)} charge(s) covering {share} of its batch")


def _run(job_name: str, month: str, instance, workspace, expect_refusals: bool = False) -> None:
    # Through the instance with the code location (not execute_in_process): a run per program-month
    # partition, shown under its job and partition in the UI with the month's full item pages (a run over
    # many programs, as the schedule launches, keeps per-partition summaries; see defs/launching.py).
    from sorae_payouts.instance.launching import launch_and_wait

    for program_id in PROGRAM_IDS:
        tags = {"sorae/operator": "demo", "sorae/batch_id": batch_id_for(parse_period(month), program_id)}
        run = launch_and_wait(
            job_name, f"{month}-01", program_id=program_id, instance=instance, workspace=workspace, tags=tags
        )
        for check_name, passed in sorted(run.checks.items()):
            console.print(f"{program_id}: check {check_name}: " + ("[green]passed[/]" if passed else "[red]FAILED[/]"))
        for failure in run.failures:
            console.print(f"[yellow]{failure}[/yellow]" if expect_refusals else f"[red]{failure}[/red]")
        if not run.success and not expect_refusals:
            raise typer.Exit(1)
        console.print(f"{job_name} [{month}|{program_id}]: {run.status.lower()} (run {run.run_id[:8]})")


def _print_batch(engine, month: str, program_id: str) -> None:
    with engine.connect() as conn:
        console.print(outcome_table(batch_outcome(conn, batch_id_for(parse_period(month), program_id))))
    console.print(f"item details: `sorae-payouts batch show {month} --program {program_id}`")
