"""Stripe dashboard links for ids shown to operators (UI metadata, CLI, CSV export).

Test-mode objects live under https://dashboard.stripe.com/test/...; which one applies follows the
key's prefix only (the key itself is never read beyond its prefix, never shown).
"""

from __future__ import annotations

import os

DASHBOARD = "https://dashboard.stripe.com"


def test_mode_from_environment() -> bool:
    """True unless STRIPE_API_KEY is a live key (sk_live_/rk_live_): demo, sandbox and tests are test mode."""
    return not os.environ.get("STRIPE_API_KEY", "").startswith(("sk_live_", "rk_live_"))


def transfer_url(transfer_id: str | None, test_mode: bool | None = None) -> str | None:
    return _url("connect/transfers", transfer_id, test_mode)


def account_url(account_id: str | None, test_mode: bool | None = None) -> str | None:
    return _url("connect/accounts", account_id, test_mode)


def _url(path: str, object_id: str | None, test_mode: bool | None) -> str | None:
    if not object_id:
        return None
    test = test_mode_from_environment() if test_mode is None else test_mode
    return f"{DASHBOARD}{'/test' if test else ''}/{path}/{object_id}"
