"""``python -m sorae_sandbox``: run the Stripe Connect sandbox in the foreground.

Example::

    python -m sorae_sandbox --port 12111 --state /tmp/sandbox.sqlite3 \\
        --balance usd=100000000 --balance eur=50000000 --latency-ms 40 --rate-limit 25 \\
        --platform sk_test_merchant_b_0001:usd=500000,eur=1000

``--balance`` seeds the default platform (any test key works for it unless ``--api-key`` names its
keys); each ``--platform KEY[:CUR=AMOUNT,...]`` is one more platform account answering to KEY.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .server import run_sandbox


def _balance(text: str) -> tuple[str, int]:
    """``usd=100000000`` -> ("usd", 100000000): a starting balance in minor units."""
    currency, sep, amount = text.partition("=")
    if not sep or len(currency) != 3 or not currency.isalpha():
        raise argparse.ArgumentTypeError(f"expected CURRENCY=AMOUNT, e.g. usd=100000000; got {text!r}")
    try:
        return currency.lower(), int(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"amount must be an integer in minor units: {text!r}") from None


def _platform(text: str) -> tuple[str, dict[str, int]]:
    """``sk_test_b:usd=500,eur=7`` -> ("sk_test_b", {"usd": 500, "eur": 7}): a platform and its balances."""
    key, _, balances = text.partition(":")
    return key, dict(_balance(entry) for entry in balances.split(",") if entry)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sorae_sandbox", description="Local Stripe Connect sandbox (HTTP).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--state", default=None, help="SQLite state file (default: temporary)")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every /v1 request")
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="requests per second over all /v1 requests (excess: 429)"
    )
    parser.add_argument(
        "--balance",
        type=_balance,
        action="append",
        default=[],
        metavar="CUR=AMOUNT",
        help="starting platform balance, repeatable",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY",
        help="a key of the default platform, repeatable; without it any test key "
        "no other platform owns is the default platform's",
    )
    parser.add_argument(
        "--platform",
        type=_platform,
        action="append",
        default=[],
        metavar="KEY[:CUR=AMOUNT,...]",
        help="one more platform account answering to KEY, repeatable",
    )
    parser.add_argument(
        "--clock-offset-seconds", type=int, default=0, help="run the sandbox clock this far ahead of real time (>= 0)"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    # `kill PID` should stop the server as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    run_sandbox(
        args.host,
        args.port,
        args.state,
        args.latency_ms,
        args.rate_limit,
        dict(args.balance),
        args.clock_offset_seconds,
        api_keys=args.api_key,
        platforms=dict(args.platform),
    )


if __name__ == "__main__":
    sys.exit(main())
