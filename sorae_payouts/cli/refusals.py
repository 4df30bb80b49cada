"""The CLI's one handler of refusals (`core.errors.PayoutRefused`): every command is wrapped by it.

A refusal prints one line, "refused: <reason>" (with --json: `{"refused": "<reason>"}` on stdout), and exits 1;
nothing else of the engine's exceptions is caught here, so a bug keeps its traceback.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from sorae_payouts.core.errors import PayoutRefused

console = Console()


def refused(exc: PayoutRefused, *, as_json: bool = False) -> typer.Exit:
    """Print the refusal the house way and return the Exit to raise (`raise refused(exc) from exc`)."""
    if as_json:
        typer.echo(json.dumps({"refused": str(exc)}, indent=2))
    else:
        console.print(f"[red]refused:[/red] {escape(str(exc))}", highlight=False)
    return typer.Exit(1)


def refusals_exit(command: Callable) -> Callable:
    """Wrap a command so a PayoutRefused anywhere below it becomes `refused(...)` and exit code 1."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PayoutRefused as exc:
            raise refused(exc, as_json=bool(kwargs.get("as_json"))) from exc

    return run


class RefusingTyper(typer.Typer):
    """A command group whose commands are wrapped by `refusals_exit` as they are registered, so the group
    handles refusals the same way on its own (tests invoke groups directly) as inside the whole CLI."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(command: Callable) -> Callable:
            register(refusals_exit(command))
            return command

        return decorator
