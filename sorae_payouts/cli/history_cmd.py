"""`sorae-payouts history AFFILIATE_ID`: one affiliate's payouts, month by month, as the portal shows them.

Support staff use it to answer "where is my money?": per month what was earned (gross commissions,
reversed orders, clawbacks), carried in, due, and its status with the affiliate-facing reason.
Read-only; the ledger comes from SORAE_DATABASE_URL like every other command.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from sorae_payouts.core.periods import period_key
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.portal.history import affiliate_history


def history(
    affiliate_id: str = typer.Argument(..., help="The affiliate's id, e.g. aff_123."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (the portal's JSON)."),
    program: str = typer.Option(
        None, "--program", help="Only this program (merchant); default: every program the affiliate id belongs to."
    ),
) -> None:
    """An affiliate's payout history, newest month first, across the programs they belong to."""
    engine = create_ledger_engine()
    try:
        with engine.connect() as conn:
            entries = affiliate_history(conn, affiliate_id, program_id=program)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps([e.as_json() for e in entries], indent=2))
        return
    console = Console()
    if not entries:
        console.print(
            f"No payout history for affiliate {affiliate_id} (unknown affiliate, or no month paid out yet).",
            markup=False,
            highlight=False,
        )
        return
    # Narrow enough for an 80-column terminal; the breakdown and reasons follow as full lines.
    several = len({e.program_id for e in entries}) > 1
    columns = ("month", *(("program",) if several else ()), "earned", "carried in", "total", "status")
    table = Table(*columns, title=Text(f"Payout history of {affiliate_id}"))
    for e in entries:
        table.add_row(
            f"{period_key(e.period)} {e.currency}",
            *((Text(e.merchant),) if several else ()),
            e.money(e.earned_minor),
            e.money(e.carried_in_minor),
            e.money(e.amount_minor),
            e.status,
        )
    console.print(table)
    for e in entries:
        console.print(
            Text(f"{period_key(e.period)} {e.currency}" + (f" ({e.merchant})" if several else ""), style="bold")
        )
        lines = [
            f"{e.commission_count} commission(s): {e.money(e.gross_minor)} gross, "
            f"{e.money(e.in_period_adjustments_minor)} reversed in the month, "
            f"{e.money(e.clawbacks_minor)} clawed back from earlier months"
        ]
        lines += [f"transfer {e.transfer_id}"] if e.transfer_id else []
        lines += [e.reason] if e.reason else []
        lines += [f"amount outstanding: {e.money(e.outstanding_minor)}"] if e.outstanding_minor else []
        for line in lines:
            console.print(Padding(Text(line), (0, 0, 0, 2)))
