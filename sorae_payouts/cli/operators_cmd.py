"""`sorae-payouts operators ...`: the registry of people who may approve payout batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from sorae_payouts.cli.refusals import RefusingTyper
from sorae_payouts.core.origin import Origin
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.registry.operators import add_operator, list_operators, set_operator_status
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, require_active_program

app = RefusingTyper(
    help="Operators who may approve payout batches (registry with append-only history).", no_args_is_help=True
)
console = Console()

_BY_HELP = "Who makes this change (recorded in the history); default: the OS user."
_PROGRAM_HELP = "The program whose approvers these are (operators are registered per program)."


def _actor(by: str | None, origin: Origin) -> str:
    return by or f"os:{origin.os_user}"


@app.command("add")
def add_command(
    identity: str = typer.Argument(..., help="The operator's identity, e.g. an email or login name."),
    name: str = typer.Option(None, "--name", help="Display name (default: the identity as typed)."),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
) -> None:
    """Register an operator (stored normalized: NFKC, case-folded, trimmed) for a program."""
    origin = Origin.here()
    engine = create_ledger_engine()
    with engine.connect() as conn:
        require_active_program(conn, program)
    operator = add_operator(
        engine,
        identity,
        display_name=name,
        added_by=_actor(by, origin),
        now=datetime.now(UTC),
        origin=origin,
        program_id=program,
    )
    console.print(f"registered operator [bold]{operator.operator_id}[/bold] ({operator.display_name})")


def _set_status(identity: str, by: str | None, active: bool, program: str) -> None:
    origin = Origin.here()
    operator = set_operator_status(
        create_ledger_engine(),
        identity,
        active=active,
        changed_by=_actor(by, origin),
        now=datetime.now(UTC),
        origin=origin,
        program_id=program,
    )
    console.print(f"operator [bold]{operator.operator_id}[/bold] is now {operator.status}")


@app.command("disable")
def disable_command(
    identity: str = typer.Argument(...),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
) -> None:
    """Disable an operator: their future approvals are refused (their past ones stay on record)."""
    _set_status(identity, by, active=False, program=program)


@app.command("enable")
def enable_command(
    identity: str = typer.Argument(...),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
) -> None:
    """Re-enable a disabled operator."""
    _set_status(identity, by, active=True, program=program)


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
) -> None:
    """Registered operators of a program and their status."""
    with create_ledger_engine().connect() as conn:
        operators = list_operators(conn, program)
    if as_json:
        typer.echo(json.dumps([o.as_json() for o in operators], indent=2))
        return
    table = Table("operator", "name", "status", "added", "added by")
    for o in operators:
        table.add_row(o.operator_id, o.display_name, o.status, f"{o.added_at:%Y-%m-%d %H:%M}", o.added_by)
    console.print(table)
