"""Entry point of the `sorae-payouts` command: assembles the command groups."""

from __future__ import annotations

import typer

from sorae_payouts.cli import (
    batch_cmd,
    database_cmd,
    demo_cmd,
    demo_data_cmd,
    history_cmd,
    import_cmd,
    operations_cmd,
    operators_cmd,
    reversals_cmd,
    sandbox_cmd,
)

app = typer.Typer(help="Sorae payouts: affiliate commissions to Stripe Connect transfers.", no_args_is_help=True)
app.add_typer(database_cmd.app, name="db")
app.add_typer(import_cmd.app, name="import")
app.add_typer(batch_cmd.app, name="batch")
app.add_typer(operators_cmd.app, name="operators")
app.command("demo-data")(demo_data_cmd.demo_data)
app.command("demo")(demo_cmd.demo)
app.command("sandbox")(sandbox_cmd.sandbox)
operations_cmd.register(app)
app.command("history")(history_cmd.history)
app.add_typer(reversals_cmd.app, name="reversals")

if __name__ == "__main__":
    app()
