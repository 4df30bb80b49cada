"""`--program` on the commands that act on a program's batch, and how it is resolved when omitted.

Optional while it is unambiguous: with one registered program, or when only one program has a batch
for the period asked about, that program is meant; otherwise the command refuses and names the
candidates (acting on the wrong merchant's batch is worse than asking). A single-merchant deployment
never needs it.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
import typer

from sorae_payouts.ledger.sql import text
from sorae_payouts.registry.programs import ProgramError, get_program, list_programs

HELP = "The program (merchant) whose batch this is; optional while only one program could be meant."


def option():
    return typer.Option(None, "--program", help=HELP)


def resolve_program(conn: sa.Connection, program: str | None, period: date | None = None) -> str:
    """The program meant by `--program` (checked to exist), or the only one that can be meant."""
    if program is not None:
        return get_program(conn, program).program_id
    programs = [p.program_id for p in list_programs(conn)]
    if len(programs) == 1:
        return programs[0]
    if period is not None:
        with_batch = (
            conn.execute(
                text("SELECT program_id FROM payout_batch WHERE period = :p ORDER BY program_id"), {"p": period}
            )
            .scalars()
            .all()
        )
        if len(with_batch) == 1:
            return with_batch[0]
        if with_batch:
            raise ProgramError(
                f"{len(with_batch)} programs have a batch for this month ({', '.join(with_batch)}); "
                "name one with --program"
            )
    raise ProgramError(f"{len(programs)} programs are registered ({', '.join(programs)}); name one with --program")
