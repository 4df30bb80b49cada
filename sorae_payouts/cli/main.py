"""Entry point of the `sorae-payouts` command: assembles the command groups.

Start-up time matters to operators: only the module of the command being run is imported (pandas,
Dagster and the Stripe SDK load only for the commands that use them). Dagster's Beta/Preview warnings
are about APIs we chose knowingly (docs/architecture.md); they are silenced for the CLI's own output
and for the Dagster processes it starts (SORAE_QUIET_DAGSTER_WARNINGS, read by `sorae_payouts.defs`),
never for tests. Output that is not a terminal is not wrapped at 80 columns.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

# name -> (module in sorae_payouts.cli, attribute, a Typer group or a command function)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "db": ("database_cmd", "app", "group"),
    "import": ("import_cmd", "app", "group"),
    "batch": ("batch_cmd", "app", "group"),
    "operators": ("operators_cmd", "app", "group"),
    "programs": ("programs_cmd", "app", "group"),
    "reversals": ("reversals_cmd", "app", "group"),
    "month-end": ("run_cmd", "month_end", "command"),
    "demo-data": ("demo_data_cmd", "demo_data", "command"),
    "demo": ("demo_cmd", "demo", "command"),
    "sandbox": ("sandbox_cmd", "sandbox", "command"),
    "retry": ("operations_cmd", "retry", "command"),
    "refresh": ("operations_cmd", "refresh", "command"),
    "reconcile": ("operations_cmd", "reconcile", "command"),
    "history": ("history_cmd", "history", "command"),
}
# Sub-commands that live in another module than their group: (group, name) -> (module, attribute)
GROUP_COMMANDS: dict[tuple[str, str], tuple[str, str]] = {
    ("batch", "execute"): ("run_cmd", "execute"),
}
HELP = "Sorae payouts: affiliate commissions to Stripe Connect transfers."


def quiet_environment() -> None:
    """Call before any command module is imported (rich reads COLUMNS when its consoles are created)."""
    os.environ.setdefault("SORAE_QUIET_DAGSTER_WARNINGS", "1")
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = "100000"  # piped or redirected: one line per row, never wrapped
        os.environ.setdefault("TERMINAL_WIDTH", "100")  # typer's help and error boxes: not 100,000 wide
    import warnings

    for stage in ("beta", "preview"):
        warnings.filterwarnings("ignore", message=rf"(?s).*is currently in {stage}")


def build_app(only: str | None = None):
    """The Typer app with every command, or only `only` (and its group's extra sub-commands)."""
    import typer

    from sorae_payouts.cli.refusals import refusals_exit

    app = typer.Typer(help=HELP, no_args_is_help=True)

    @app.callback()
    def _group() -> None:  # keeps a group even when only one command is registered (lazy start-up)
        pass

    for name, (module, attribute, kind) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(import_module(f"sorae_payouts.cli.{module}"), attribute)
        if kind == "group":
            for (group, sub), (sub_module, sub_attribute) in GROUP_COMMANDS.items():
                if group == name and sub not in {c.name for c in target.registered_commands}:
                    target.command(sub)(getattr(import_module(f"sorae_payouts.cli.{sub_module}"), sub_attribute))
            for registered in target.registered_commands:  # every refusal caught once (cli/refusals.py)
                if getattr(registered.callback, "__wrapped__", None) is None:  # RefusingTyper groups already are
                    registered.callback = refusals_exit(registered.callback)
            app.add_typer(target, name=name)
        else:
            app.command(name)(refusals_exit(target))
    return app


def main() -> None:
    quiet_environment()
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    build_app(first if first in COMMANDS else None)()


def __getattr__(name: str):
    # `from sorae_payouts.cli.main import app` (tests, typer's CliRunner): the complete app.
    if name == "app":
        return build_app()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
