"""`sorae-payouts sandbox`: run the local Stripe Connect sandbox in the foreground."""

from __future__ import annotations

import signal

import typer

from sorae_sandbox import run_sandbox


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def sandbox(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(12111, "--port"),
    state: str = typer.Option(None, "--state", help="SQLite state file; survives restarts. Default: temporary."),
    latency_ms: int = typer.Option(0, "--latency-ms", help="Added to every /v1 request."),
    rate_limit: float = typer.Option(None, "--rate-limit", help="Requests/s over /v1; excess gets 429 rate_limit."),
    balance: list[str] = typer.Option(
        ["usd=100000000000", "eur=100000000000", "jpy=10000000000000"],
        "--balance",
        help="Starting platform balance CUR=MINOR_UNITS, repeatable.",
    ),
    clock_offset: int = typer.Option(
        0,
        "--clock-offset-seconds",
        min=0,
        help="Run the sandbox clock this far ahead of real time (idempotency keys "
        "expire 24 h after first use on the sandbox clock).",
    ),
) -> None:
    """Serve a Stripe-compatible sandbox: point STRIPE_API_BASE at it, any sk_test_ key works."""
    balances = {}
    for entry in balance:
        currency, _, amount = entry.partition("=")
        if not amount.isdigit():
            raise typer.BadParameter(f"--balance {entry!r}: expected CUR=MINOR_UNITS, e.g. usd=100000000")
        balances[currency.lower()] = int(amount)
    signal.signal(signal.SIGTERM, _interrupt)
    run_sandbox(host, port, state, latency_ms, rate_limit, balances, clock_offset)
