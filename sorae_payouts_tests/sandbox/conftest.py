"""Fixtures for the Stripe sandbox tests: a real server on a free port, the official SDK.

Every test talks HTTP to a ``SandboxServer`` through ``stripe.StripeClient``; nothing is
monkeypatched, so what passes here is what the payout engine will see.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import stripe

from sorae_sandbox import SandboxServer

STARTING_BALANCES = {"usd": 1_000_000, "eur": 50_000}


def make_client(url: str, retries: int = 0, api_key: str = "sk_test_sandbox") -> stripe.StripeClient:
    return stripe.StripeClient(api_key=api_key, base_addresses={"api": url}, max_network_retries=retries)


def raw_request(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """A plain HTTP call (for what the SDK refuses to send, e.g. no API key at all)."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


@pytest.fixture
def state_path(tmp_path):
    return tmp_path / "sandbox.sqlite3"


@pytest.fixture
def sandbox(state_path):
    server = SandboxServer(port=0, state_path=state_path, balances=STARTING_BALANCES).start()
    yield server
    server.stop()


@pytest.fixture
def client(sandbox) -> stripe.StripeClient:
    return make_client(sandbox.url)


@pytest.fixture
def make_account(client) -> Callable[..., Any]:
    def _make(transfers: bool = True, **extra: Any):
        params: dict[str, Any] = {"type": "express", "country": "US", **extra}
        if transfers:
            params["capabilities"] = {"transfers": {"requested": True}}
        return client.v1.accounts.create(params=params)

    return _make


@pytest.fixture
def account(make_account):
    return make_account(email="affiliate@example.com", metadata={"affiliate_id": "aff_1"})


def balance_of(client: stripe.StripeClient, currency: str) -> int:
    for entry in client.v1.balance.retrieve().available:
        if entry.currency == currency:
            return entry.amount
    return 0
