"""`sorae-payouts operators ...`: the people who approve a program's batches, each with their own key.

- `keygen --out FILE`: a person creates their own signing key (private key to FILE, mode 0600; the
  public key is printed for whoever registers them). Nobody else ever holds it.
- `bootstrap`: the deployment administrator registers a program's first operators (public keys only),
  connected as the database owner (SORAE_MIGRATION_DATABASE_URL on PostgreSQL).
- `add`, `enable`, `rename`, `rekey`, `request-policy`: an operator asks, signing with SORAE_OPERATOR_KEY;
  nothing changes until `confirm` by ANOTHER operator of the program (not the one the change is about).
- `disable`: one operator's signed word, effective at once. `pending`, `list`: what is waiting, who is who.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sorae_payouts.cli.programs_cmd import _amounts
from sorae_payouts.cli.refusals import RefusingTyper
from sorae_payouts.core.origin import Origin
from sorae_payouts.ledger.database import create_ledger_engine, migration_url
from sorae_payouts.registry.operator_bootstrap import NewOperator, bootstrap_operators
from sorae_payouts.registry.operator_changes import (
    Request,
    confirm_request,
    disable_operator,
    pending_requests,
    request_change,
)
from sorae_payouts.registry.operator_keys import OPERATOR_KEY_SETTING, load_operator_key, write_private_key
from sorae_payouts.registry.operators import list_operators
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, require_active_program

app = RefusingTyper(
    help="Operators who approve payout batches: personal signing keys, changes confirmed by a second operator.",
    no_args_is_help=True,
)
console = Console()

_PROGRAM_HELP = "The program whose operators these are (operators are registered per program)."
_BY_HELP = f"Optional check: who you are; refused unless it is the operator of the key in {OPERATOR_KEY_SETTING}."
_KEY_HELP = "The person's public key, as `operators keygen` printed it on THEIR machine."


def _program(program: str) -> str:
    with create_ledger_engine().connect() as conn:
        return require_active_program(conn, program).program_id


def _requested(request: Request) -> None:
    console.print(
        f"[yellow]pending[/yellow] {request.describe()}; it takes effect when another operator of program "
        f"{request.program_id} runs `sorae-payouts operators confirm {request.request_pk} "
        f"--program {request.program_id}`",
        highlight=False,
    )


def _request(program: str, kind: str, by: str | None, **values) -> None:
    program_id = _program(program)
    request = request_change(
        create_ledger_engine(),
        program_id,
        load_operator_key(),
        kind,
        now=datetime.now(UTC),
        acting_as=by,
        origin=Origin.here(),
        **values,
    )
    _requested(request)


@app.command("keygen")
def keygen_command(
    out: Path = typer.Option(None, "--out", help="Write the private key to this NEW file (mode 0600)."),
) -> None:
    """Create YOUR personal signing key. Keep the private key to yourself (point SORAE_OPERATOR_KEY at the
    file); give the printed public key to whoever registers you."""
    from sorae_payouts.core.signing import SigningKey

    key = SigningKey.generate()
    if out is not None:
        path = write_private_key(key, out)
        console.print(f"private key written to {path} (mode 0600); set {OPERATOR_KEY_SETTING}={path}", highlight=False)
    else:
        typer.echo(key.pem().decode().rstrip())
        console.print(
            "[yellow]the private key above is shown once and stored nowhere: save it now, readable by you only[/yellow]"
        )
    console.print(f"public key: {key.public_key}", highlight=False, markup=False)
    console.print(f"key id: {key.key_id}", highlight=False)


@app.command("bootstrap")
def bootstrap_command(
    operator: list[str] = typer.Option(
        ..., "--operator", help="IDENTITY=PUBLIC_KEY of one of the program's first operators (repeatable)."
    ),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help="The administrator's name, recorded with the bootstrap."),
) -> None:
    """The administrator registers a program's first operators in one step (public keys only), as the
    database owner (SORAE_MIGRATION_DATABASE_URL on PostgreSQL; on SQLite once per program)."""
    new = []
    for value in operator:
        identity, sep, public_key = value.partition("=")
        if not sep or not identity.strip() or not public_key.strip():
            raise typer.BadParameter(f"{value!r}: expected IDENTITY=PUBLIC_KEY", param_hint="--operator")
        new.append(NewOperator(identity.strip(), public_key.strip()))
    origin = Origin.here()
    engine = create_ledger_engine(migration_url())
    try:
        registered = bootstrap_operators(
            engine, program, new, recorded_by=by or f"os:{origin.os_user}", now=datetime.now(UTC), origin=origin
        )
    finally:
        engine.dispose()
    for o in registered:
        console.print(f"registered operator [bold]{o.operator_id}[/bold] of {program}, key {o.key_id[:16]}")


@app.command("add")
def add_command(
    identity: str = typer.Argument(..., help="The new operator's identity, e.g. an email."),
    public_key: str = typer.Option(..., "--public-key", help=_KEY_HELP),
    name: str = typer.Option(None, "--name", help="Display name (default: the identity as typed)."),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Ask to register an operator (pending until another operator confirms)."""
    _request(program, "add", by, subject=identity, display_name=name or identity, public_key=public_key)


@app.command("enable")
def enable_command(
    identity: str = typer.Argument(...),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Ask to re-enable a disabled operator (pending until another operator confirms)."""
    _request(program, "enable", by, subject=identity)


@app.command("rename")
def rename_command(
    identity: str = typer.Argument(...),
    name: str = typer.Option(..., "--name", help="The new display name."),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Ask to change an operator's display name (the identity never changes)."""
    _request(program, "rename", by, subject=identity, display_name=name)


@app.command("rekey")
def rekey_command(
    identity: str = typer.Argument(...),
    public_key: str = typer.Option(..., "--public-key", help=_KEY_HELP),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Ask to replace an operator's key (a lost or leaked key); pending until another operator confirms."""
    _request(program, "rekey", by, subject=identity, public_key=public_key)


@app.command("request-policy")
def request_policy_command(
    dual_approval_over: list[str] = typer.Option(
        None, "--dual-approval-over", help="Batch total per currency above which two people approve, e.g. usd=10000."
    ),
    unset: bool = typer.Option(False, "--unset", help="Back to the deployment's thresholds."),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Ask to change the program's dual-approval thresholds (pending until another operator confirms)."""
    if bool(dual_approval_over) == unset:
        raise typer.BadParameter("give --dual-approval-over CUR=AMOUNT (repeatable) or --unset")
    thresholds = None if unset else _amounts(dual_approval_over, "--dual-approval-over")
    _request(program, "policy", by, thresholds=thresholds)


@app.command("confirm")
def confirm_command(
    request_pk: int = typer.Argument(..., help="The request number (see `operators pending`)."),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Confirm another operator's pending request with your key; it takes effect now."""
    request = confirm_request(
        create_ledger_engine(),
        _program(program),
        request_pk,
        load_operator_key(),
        now=datetime.now(UTC),
        acting_as=by,
        origin=Origin.here(),
    )
    console.print(f"[green]confirmed[/green] {request.describe()}, by {request.confirmed_by}", highlight=False)


@app.command("disable")
def disable_command(
    identity: str = typer.Argument(...),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Disable an operator at once (their future approvals are refused; their past ones stay on record)."""
    operator = disable_operator(
        create_ledger_engine(),
        _program(program),
        identity,
        load_operator_key(),
        now=datetime.now(UTC),
        acting_as=by,
        origin=Origin.here(),
    )
    console.print(f"operator [bold]{operator.operator_id}[/bold] is now {operator.status}")


@app.command("pending")
def pending_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
) -> None:
    """Requests waiting for a second operator's confirmation."""
    with create_ledger_engine().connect() as conn:
        requests = pending_requests(conn, program)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in requests], indent=2))
        return
    for r in requests:
        console.print(r.describe(), highlight=False, markup=False)
    if not requests:
        console.print(f"no pending request in program {program}")


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    program: str = typer.Option(DEFAULT_PROGRAM, "--program", help=_PROGRAM_HELP),
) -> None:
    """Registered operators of a program, their status and key."""
    with create_ledger_engine().connect() as conn:
        operators = list_operators(conn, program)
    if as_json:
        typer.echo(json.dumps([o.as_json() for o in operators], indent=2))
        return
    table = Table("operator", "name", "status", "key", "added", "added by")
    for o in operators:
        key = o.key_id[:16] if o.key_id else "(none: cannot sign)"
        table.add_row(o.operator_id, o.display_name, o.status, key, f"{o.added_at:%Y-%m-%d %H:%M}", o.added_by)
    console.print(table)
