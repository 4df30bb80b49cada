"""`sorae-payouts programs ...`: the merchants' programs (registry with append-only history) and their funding.

A program pays from Sorae's platform account (`--pays platform`, the default) or from the merchant's own
Stripe account, named by a reference to its secret key (`--pays env:ACME_STRIPE_KEY` or
`--pays secrets:acme`, an entry of the JSON file SORAE_SECRETS_FILE): the ledger stores the reference,
never the key. Policy options override the deployment's settings for this program only; a batch
freezes the policy it was built with.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from sorae_payouts.cli.refusals import RefusingTyper
from sorae_payouts.core.origin import Origin
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.registry.programs import (
    add_program,
    get_program,
    list_programs,
    program_history,
    set_program_status,
    update_program,
)

app = RefusingTyper(
    help="Programs (one per merchant): who pays them, their policy, their funding.", no_args_is_help=True
)
console = Console()

_BY_HELP = "Who makes this change (recorded in the history); default: the OS user."
_PAYS_HELP = "platform (Sorae's account, default), env:VARIABLE or secrets:<entry> (the merchant's own key)."
_MIN_HELP = "Minimum payout per currency in major units, e.g. usd=50.00 (repeatable)."
_DUAL_HELP = "Batch total per currency above which two people approve, e.g. usd=10000 (repeatable)."


def _actor(by: str | None, origin: Origin) -> str:
    return by or f"os:{origin.os_user}"


def _amounts(values: list[str] | None, option: str) -> dict[str, int]:
    from sorae_payouts.core.money import parse_minor

    parsed = {}
    for value in values or []:
        currency, sep, amount = value.partition("=")
        currency = currency.strip().lower()
        try:
            if not sep:
                raise ValueError("expected CURRENCY=AMOUNT")
            parsed[currency] = parse_minor(amount.strip(), currency)
        except ValueError as exc:
            raise typer.BadParameter(f"{value!r}: {exc}", param_hint=option) from None
    return parsed


def _policy(minimum, dual_approval_over, holding_days, negative_balance, first_period) -> dict:
    policy: dict = {}
    if minimum:
        policy["minimum_minor"] = _amounts(minimum, "--minimum")
    if dual_approval_over:
        policy["dual_approval_over_minor"] = _amounts(dual_approval_over, "--dual-approval-over")
    if holding_days is not None:
        policy["holding_days"] = holding_days
    if negative_balance is not None:
        policy["negative_balance"] = negative_balance
    if first_period is not None:
        policy["first_period"] = first_period
    return policy


@app.command("add")
def add_command(
    program_id: str = typer.Argument(..., help="Short id: lowercase letters, digits, '-' or '_'."),
    name: str = typer.Option(..., "--name", help="The merchant's name, as affiliates see it."),
    pays: str = typer.Option("platform", "--pays", help=_PAYS_HELP),
    minimum: list[str] = typer.Option(None, "--minimum", help=_MIN_HELP),
    dual_approval_over: list[str] = typer.Option(None, "--dual-approval-over", help=_DUAL_HELP),
    holding_days: int = typer.Option(None, "--holding-days", min=0),
    negative_balance: str = typer.Option(None, "--negative-balance", help="carry or recover_by_reversal"),
    first_period: str = typer.Option(None, "--first-period", help="YYYY-MM"),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Register a program. Its partitions appear in Dagster at the next sensor tick."""
    origin = Origin.here()
    policy = _policy(minimum, dual_approval_over, holding_days, negative_balance, first_period)
    program = add_program(
        create_ledger_engine(),
        program_id,
        name=name,
        paying_account_ref=pays,
        policy=policy,
        added_by=_actor(by, origin),
        now=datetime.now(UTC),
        origin=origin,
    )
    console.print(
        f"registered program [bold]{program.program_id}[/bold] ({program.name}), pays from "
        f"{program.paying_account_ref or 'the platform account'}",
        highlight=False,
    )


@app.command("update")
def update_command(
    program_id: str = typer.Argument(...),
    name: str = typer.Option(None, "--name"),
    pays: str = typer.Option(None, "--pays", help=_PAYS_HELP),
    minimum: list[str] = typer.Option(None, "--minimum", help=_MIN_HELP),
    dual_approval_over: list[str] = typer.Option(None, "--dual-approval-over", help=_DUAL_HELP),
    holding_days: int = typer.Option(None, "--holding-days", min=0),
    negative_balance: str = typer.Option(None, "--negative-balance"),
    first_period: str = typer.Option(None, "--first-period", help="YYYY-MM"),
    unset: list[str] = typer.Option(
        None,
        "--unset",
        help="A policy key to remove (back to the deployment's setting), e.g. minimum_minor (repeatable).",
    ),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Change a program; the change is appended to its history. Built batches keep their frozen policy."""
    origin = Origin.here()
    changes = _policy(minimum, dual_approval_over, holding_days, negative_balance, first_period)
    options = {"paying_account_ref": pays} if pays is not None else {}
    program = update_program(
        create_ledger_engine(),
        program_id,
        name=name,
        policy_changes=changes,
        policy_removals=tuple(unset or ()),
        changed_by=_actor(by, origin),
        now=datetime.now(UTC),
        origin=origin,
        **options,
    )
    console.print(f"program [bold]{program.program_id}[/bold] updated", highlight=False)


def _set_status(program_id: str, by: str | None, active: bool) -> None:
    origin = Origin.here()
    program = set_program_status(
        create_ledger_engine(),
        program_id,
        active=active,
        changed_by=_actor(by, origin),
        now=datetime.now(UTC),
        origin=origin,
    )
    console.print(f"program [bold]{program.program_id}[/bold] is now {program.status}", highlight=False)


@app.command("disable")
def disable_command(program_id: str = typer.Argument(...), by: str = typer.Option(None, "--by", help=_BY_HELP)):
    """Disable a program: no new month-end or payment for it (its records stay)."""
    _set_status(program_id, by, active=False)


@app.command("enable")
def enable_command(program_id: str = typer.Argument(...), by: str = typer.Option(None, "--by", help=_BY_HELP)):
    """Re-enable a disabled program."""
    _set_status(program_id, by, active=True)


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every program, who pays it and its status."""
    with create_ledger_engine().connect() as conn:
        programs = list_programs(conn)
    if as_json:
        typer.echo(json.dumps([p.as_json() for p in programs], indent=2))
        return
    table = Table("program", "name", "pays from", "status", "policy overrides")
    for p in programs:
        table.add_row(
            p.program_id,
            p.name,
            p.paying_account_ref or "platform",
            p.status,
            json.dumps(p.policy, sort_keys=True) if p.policy else "",
        )
    console.print(table)


@app.command("show")
def show_command(
    program_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One program: who pays it, its policy, its operators, its funding and its history."""
    from sorae_payouts.registry.operators import list_operators

    with create_ledger_engine().connect() as conn:
        program = get_program(conn, program_id)
        operators = [o.as_json() for o in list_operators(conn, program_id)]
        funding = _funding(conn, program_id)
        history = program_history(conn, program_id)
    document = {**program.as_json(), "operators": operators, "funding": funding, "history": history}
    if as_json:
        typer.echo(json.dumps(document, indent=2, default=str))
        return
    console.print(json.dumps(document, indent=2, default=str), highlight=False, markup=False)


def _funding(conn, program_id: str) -> dict:
    try:
        from sorae_payouts.registry.funding import available_funding
    except ImportError:  # funding arrives with the execution piece
        return {}
    return {currency: amount for currency, amount in available_funding(conn, program_id).items()}


@app.command("fund")
def fund_command(
    program_id: str = typer.Argument(...),
    charge: str = typer.Option(None, "--charge", help="A Stripe charge id (ch_...) that funds it."),
    topup: str = typer.Option(None, "--topup", help="A Stripe top-up id (tu_...) that funds it."),
    note: str = typer.Option(None, "--note"),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Record money that funds a program on the shared platform account. Amount and currency are read
    from Stripe, never typed; a charge named here is also the transfers' `source_transaction`."""
    from sorae_payouts.registry.funding import record_funding
    from sorae_payouts.registry.paying_accounts import ProgramGateways
    from sorae_payouts.stripe_gateway.gateway import config_from_environment

    if bool(charge) == bool(topup):
        raise typer.BadParameter("give exactly one of --charge or --topup")
    origin = Origin.here()
    engine = create_ledger_engine()
    gateway = ProgramGateways(config_from_environment(), engine).for_program_id(program_id)
    funding = record_funding(
        engine,
        gateway,
        program_id,
        charge_id=charge,
        topup_id=topup,
        recorded_by=_actor(by, origin),
        now=datetime.now(UTC),
        note=note,
    )
    console.print(f"program [bold]{program_id}[/bold] funded: {funding}", highlight=False)
