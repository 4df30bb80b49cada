"""`sorae-payouts db ...`: schema management of the ledger."""

from __future__ import annotations

import typer
from rich.console import Console

from sorae_payouts.ledger.database import create_ledger_engine, current_revision, database_url, redact, upgrade

app = typer.Typer(help="Ledger database schema.", no_args_is_help=True)
console = Console()


@app.command("upgrade")
def upgrade_command() -> None:
    """Create the ledger schema or migrate it to the latest revision (SORAE_DATABASE_URL)."""
    engine = create_ledger_engine()
    upgrade(engine)
    console.print(f"ledger at {redact(database_url())} is at revision {current_revision(engine)}")
