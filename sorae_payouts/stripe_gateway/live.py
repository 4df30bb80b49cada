"""Live money needs an explicit yes: the one rule, for every path that can send transfers.

A live key (`sk_live_...`, `rk_live_...`) moves real money. Any execution, retry or refresh that would
send transfers with one refuses, sending nothing, unless `SORAE_LIVE_PAYOUTS=1` is set in the
environment of the process; when it proceeds it first announces the paying Stripe account, the batch
and the totals it will pay. `sorae-payouts demo` refuses live keys and real Stripe outright.
The executor calls `StripeGateway.authorize_payouts` (which applies `live_payout_announcement`) before
its first request of a run, and the gateway refuses to create a live transfer that was not authorized.
The rule is about the key, whoever it pays for: Sorae's platform key (STRIPE_API_KEY) and every
program's own key (`paying_accounts`, `env:`/`secrets:` references) alike; execution and retry check
the key that pays the program with its source named (`paying_accounts.require_live_payouts_allowed_for`).
"""

from __future__ import annotations

import os

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.money import format_minor

LIVE_PAYOUTS_SETTING = "SORAE_LIVE_PAYOUTS"
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


class LivePayoutsRefused(PayoutRefused):
    """A live key without the explicit setting: nothing was sent."""


def is_live_key(api_key: str) -> bool:
    return api_key.startswith(LIVE_KEY_PREFIXES)


def live_payouts_enabled() -> bool:
    return os.environ.get(LIVE_PAYOUTS_SETTING, "") == "1"


def require_live_payouts_allowed(api_key: str, key_source: str = "STRIPE_API_KEY") -> None:
    """Raise `LivePayoutsRefused` for a live key unless SORAE_LIVE_PAYOUTS=1. `key_source` names where
    the key came from (STRIPE_API_KEY, or a program's `env:`/`secrets:` reference), never the key."""
    if is_live_key(api_key) and not live_payouts_enabled():
        raise LivePayoutsRefused(
            f"{key_source} is a LIVE key: sending transfers moves real money. Set {LIVE_PAYOUTS_SETTING}=1 in "
            "the environment of this process to confirm; nothing was sent"
        )


def live_payout_announcement(
    api_key: str, paying_account: str, batch_id: str, totals: dict[str, tuple[int, int]]
) -> str | None:
    """What a live run says before it pays (None for a test key): the paying account, the batch and, per
    currency, the number of transfers and the amount it may send. `totals`: currency -> (count, minor)."""
    if not is_live_key(api_key):
        return None
    require_live_payouts_allowed(api_key)
    amounts = (
        ", ".join(
            f"{count} transfers / {format_minor(amount, currency)}"
            for currency, (count, amount) in sorted(totals.items())
        )
        or "nothing new to send"
    )
    return f"LIVE PAYOUTS ({LIVE_PAYOUTS_SETTING}=1): Stripe account {paying_account} pays batch {batch_id}: {amounts}"


def demo_refusal(api_key: str | None, api_base: str | None) -> str | None:
    """Why `sorae-payouts demo` refuses this Stripe, or None: never a live key, never real Stripe."""
    if api_key and is_live_key(api_key):
        return (
            "the demo never runs with a live Stripe key (sk_live_/rk_live_): unset STRIPE_API_KEY to use the "
            "local sandbox, or use a test key with STRIPE_API_BASE"
        )
    if api_key and not api_base:
        return (
            "the demo never runs against real Stripe (STRIPE_API_KEY set without STRIPE_API_BASE): unset "
            "STRIPE_API_KEY to use the local sandbox, or point STRIPE_API_BASE at a sandbox or mock"
        )
    return None
