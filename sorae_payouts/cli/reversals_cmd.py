"""`sorae-payouts reversals ...`: reversed money waiting for an operator's decision, and the decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from sorae_payouts.aftercare.reversals import OWE_AGAIN, WRITE_OFF, resolve_reversal, reversed_items
from sorae_payouts.cli.refusals import RefusingTyper
from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import parse_period, period_key
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.stripe_gateway.gateway import config_from_environment

app = RefusingTyper(
    help="Reversed transfers: list them, decide what they mean (owed again or written off).", no_args_is_help=True
)
console = Console()


def _period(text: str | None):
    try:
        return parse_period(text) if text else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("list")
def list_command(
    period: str = typer.Argument(None, help="YYYY-MM (default: every month)"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    pending_only: bool = typer.Option(False, "--pending", help="Only amounts awaiting a decision."),
    program: str = typer.Option(None, "--program", help="Only this program (default: every program)."),
) -> None:
    """Items whose transfer was (partly) reversed in Stripe: reversed, owed again, written off, pending."""
    with create_ledger_engine().connect() as conn:
        items = [
            i for i in reversed_items(conn, _period(period), program_id=program) if i.pending_minor or not pending_only
        ]
    if as_json:
        typer.echo(json.dumps([i.as_json() for i in items], indent=2))
        return
    if not items:
        console.print("No reversed transfers" + (f" in {period}" if period else "") + ".")
        return
    table = Table(
        "item",
        "month",
        "affiliate",
        "status",
        "transfer",
        "reversed",
        "owed again",
        "written off",
        "reversal pending",
        title="Reversed transfers",
    )
    for i in items:
        table.add_row(
            str(i.payout_item_id),
            period_key(i.period),
            i.affiliate_id,
            i.status,
            i.stripe_transfer_id or "",
            *(
                format_minor(v, i.currency)
                for v in (i.reversed_minor, i.owed_again_minor, i.written_off_minor, i.pending_minor)
            ),
        )
    console.print(table)
    waiting = [i for i in items if i.pending_minor]
    if waiting:
        console.print(
            f"{len(waiting)} item(s) await a decision: `sorae-payouts reversals resolve ITEM_ID "
            "--owe-again|--write-off --program PROGRAM [--reason TEXT]` (signed with SORAE_OPERATOR_KEY)"
        )


_BY_HELP = "Optional check: who you are; refused unless it is the operator of the key in SORAE_OPERATOR_KEY."
_PROGRAM_HELP = "The item's program; optional while only one program is registered. An item of another is refused."


def _decision(owe_again: bool, write_off: bool) -> str:
    if owe_again == write_off:
        console.print("[red]refused:[/red] choose exactly one of --owe-again or --write-off")
        raise typer.Exit(2)
    return OWE_AGAIN if owe_again else WRITE_OFF


def _program_of(engine, program: str | None) -> str:
    from sorae_payouts.cli.program_option import resolve_program

    with engine.connect() as conn:
        return resolve_program(conn, program)


@app.command("resolve")
def resolve_command(
    item_id: int = typer.Argument(..., help="The payout item id (see `reversals list`)."),
    owe_again: bool = typer.Option(False, "--owe-again", help="Owed again: paid with the next batch."),
    write_off: bool = typer.Option(False, "--write-off", help="Written off: closed with the reason."),
    reason: str = typer.Option(None, "--reason", help="Why (required for --write-off)."),
    program: str = typer.Option(None, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decide what an item's pending reversed amount means, as the operator of the item's program whose key
    is in SORAE_OPERATOR_KEY (the decision is signed with it). Appends a decision; edits nothing."""
    from sorae_payouts.registry.operator_keys import load_operator_key

    decision_kind = _decision(owe_again, write_off)
    engine = create_ledger_engine()
    decision = resolve_reversal(
        engine,
        item_id,
        decision_kind,
        program_id=_program_of(engine, program),
        key=load_operator_key(),
        reason=reason,
        now=datetime.now(UTC),
        acting_as=by,
    )
    item = decision.item
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "decision_pk": decision.decision_pk,
                    "program_id": item.program_id,
                    "payout_item_id": item.payout_item_id,
                    "decision": decision.decision,
                    "amount_minor": decision.amount_minor,
                    "currency": item.currency,
                    "decided_by": decision.decided_by,
                    "reason": decision.reason,
                    "carried_into": decision.carried_into,
                },
                indent=2,
            )
        )
        return
    words = "owed again" if decision.decision == OWE_AGAIN else "written off"
    console.print(
        f"[green]{words}[/green]: {format_minor(decision.amount_minor, item.currency)} of item "
        f"{item.payout_item_id} ({item.affiliate_id}, {period_key(item.period)}, program {item.program_id}), "
        f"decided by {decision.decided_by}; goes to {decision.carried_into}"
    )


@app.command("sign")
def sign_command(
    item_id: int = typer.Argument(..., help="The payout item id (see `reversals list`)."),
    owe_again: bool = typer.Option(False, "--owe-again"),
    write_off: bool = typer.Option(False, "--write-off"),
    reason: str = typer.Option(None, "--reason", help="Why (required for --write-off)."),
    program: str = typer.Option(None, "--program", help=_PROGRAM_HELP),
    by: str = typer.Option(None, "--by", help=_BY_HELP),
) -> None:
    """Sign a decision WITHOUT recording it: prints the run config of Dagster's resolve_reversal_job (the
    webserver has no login: it records only decisions signed here; a signature is no secret)."""
    from sorae_payouts.aftercare.reversals import sign_decision
    from sorae_payouts.registry.operator_keys import load_operator_key

    decision_kind = _decision(owe_again, write_off)
    engine = create_ledger_engine()
    program_id = _program_of(engine, program)
    signed = sign_decision(
        engine,
        item_id,
        decision_kind,
        program_id=program_id,
        key=load_operator_key(),
        reason=reason,
        now=datetime.now(UTC),
        acting_as=by,
    )
    config = {
        "item_id": item_id,
        "program": program_id,
        "decision": decision_kind,
        "reason": reason,
        **signed.as_run_config(),
    }
    typer.echo(json.dumps({"ops": {"resolve_reversal_op": {"config": config}}}, indent=2))


@app.command("recover")
def recover_command(
    period: str = typer.Argument(..., help="YYYY-MM"),
    as_json: bool = typer.Option(False, "--json"),
    program: str = typer.Option(
        None, "--program", help="The program whose batch this is; optional while only one program could be meant."
    ),
) -> None:
    """Under the batch's `recover_by_reversal` policy, reverse transfers up to each negative balance
    (also done after execution by the executed_transfers asset). Safe to run again."""
    from sorae_payouts.cli.program_option import resolve_program
    from sorae_payouts.core.periods import ProgramMonth
    from sorae_payouts.registry.paying_accounts import ProgramGateways
    from sorae_payouts.use_cases import aftercare

    engine = create_ledger_engine()
    with engine.connect() as conn:
        program_id = resolve_program(conn, program, _period(period))
    gateways = ProgramGateways(config_from_environment(), engine)
    report = aftercare.recover(engine, gateways, ProgramMonth(_period(period), program_id), now=datetime.now(UTC))
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    console.print(
        f"{report.batch_id}: policy {report.policy}; {len(report.requested)} reversals, "
        f"recovered {report.recovered_minor or 'nothing'}, {len(report.failed)} failed, "
        f"{report.unknown} unknown (re-run to resolve)"
    )
    if report.failed:
        raise typer.Exit(1)
