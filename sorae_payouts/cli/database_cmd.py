"""`sorae-payouts db ...`: schema management of the ledger."""

from __future__ import annotations

import os

import typer
from rich.console import Console

from sorae_payouts.cli.refusals import RefusingTyper
from sorae_payouts.ledger.database import create_ledger_engine, current_revision, migration_url, redact, upgrade
from sorae_payouts.ledger.privileges import APP_TABLE_PRIVILEGES, grant_app_role

app = RefusingTyper(help="Ledger database schema.", no_args_is_help=True)
console = Console()


@app.command("upgrade")
def upgrade_command(
    app_role: str = typer.Option(
        None,
        "--grant-app-role",
        envvar="SORAE_APP_ROLE",
        help="PostgreSQL: create (if needed) and grant the application's role only the "
        "DML it needs; re-applied on every upgrade. Password for a new role from "
        "SORAE_APP_ROLE_PASSWORD.",
    ),
) -> None:
    """Create the ledger schema or migrate it to the latest revision, as the owner role
    (SORAE_MIGRATION_DATABASE_URL, else SORAE_DATABASE_URL)."""
    url = migration_url()
    engine = create_ledger_engine(url)
    upgrade(engine)
    console.print(f"ledger at {redact(url)} is at revision {current_revision(engine)}")
    if app_role:
        grant_app_role(engine, app_role, password=os.environ.get("SORAE_APP_ROLE_PASSWORD") or None)
        console.print(
            f"role {app_role} has {APP_TABLE_PRIVILEGES} on the ledger tables (no TRUNCATE, no DDL, owns nothing)"
        )
