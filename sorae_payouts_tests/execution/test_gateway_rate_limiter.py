"""The gateway's limiter is pluggable (issue 11, point 5): every kind of request waits on it, and the
shared limiter of the ledger must be keyed by the account the API key actually pays from. Against the
sandbox over HTTP with the official SDK."""

from __future__ import annotations

import threading

import pytest

from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway, TransferRequest
from sorae_payouts.stripe_gateway.gateway import GatewayConfigurationError
from sorae_payouts.stripe_gateway.shared_rate_limit import SharedRateLimiter
from sorae_payouts_tests.execution.conftest import API_KEY


class CountingLimiter:
    """A limiter that lets everything through and counts: what the gateway asked of it."""

    def __init__(self) -> None:
        self.acquired = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self.acquired += 1


def _gateway(sandbox, limiter) -> StripeGateway:
    return StripeGateway(
        GatewayConfig(API_KEY, sandbox.url, max_network_retries=0, timeout_seconds=10), limiter=limiter
    )


def _v1_requests(sandbox) -> int:
    return sandbox.admin("GET", "/_sandbox/stats")["v1_requests"]


def _schedule(engine, account: str):
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT last_slot_us, reserved_at_us FROM stripe_rate_schedule WHERE paying_account = '{account}'"
        ).first()


def test_every_kind_of_request_waits_on_the_plugged_limiter(sandbox, stripe_client):
    destination = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    limiter = CountingLimiter()
    gateway = _gateway(sandbox, limiter)
    before = _v1_requests(sandbox)
    gateway.paying_account()
    gateway.account_readiness(destination)
    list(gateway.all_account_readiness())
    gateway.available_balance()
    outcome = gateway.create_transfer(
        TransferRequest(1_000, "usd", destination, "limiter_test", "limiter test", {"purpose": "limiter_test"}),
        "limiter-test-key-1",
    )
    transfer_id = outcome.transfer.transfer_id
    gateway.transfer(transfer_id)
    gateway.reverse_transfer(transfer_id, 400, "limiter-test-reversal-1", {"purpose": "limiter_test"})
    list(gateway.transfers("limiter_test"))
    sent = _v1_requests(sandbox) - before
    assert sent == 8
    assert limiter.acquired == sent == sum(gateway.request_counts.values())
    assert gateway.request_counts["transfers.reversals.create"] == gateway.request_counts["transfers.retrieve"] == 1


def test_a_shared_limiter_keyed_by_another_account_is_refused(engine, sandbox):
    gateway = _gateway(sandbox, SharedRateLimiter(engine, "acct_somebodyelse", 100))
    with pytest.raises(GatewayConfigurationError, match="acct_somebodyelse"):
        gateway.paying_account()
    with pytest.raises(GatewayConfigurationError):  # refused again, not cached after the first refusal
        gateway.paying_account()


def test_a_shared_limiter_schedules_every_request_of_its_account(engine, sandbox, stripe_client):
    platform = stripe_client.v1.accounts.retrieve_current().id
    gateway = _gateway(sandbox, SharedRateLimiter(engine, platform, 100))
    assert gateway.paying_account() == platform  # the GET /v1/account itself took a slot
    first = _schedule(engine, platform)
    assert first is not None
    gateway.available_balance()
    assert _schedule(engine, platform)[0] > first[0]


def test_share_rate_limit_switches_to_the_paying_accounts_schedule(engine, sandbox, stripe_client):
    platform = stripe_client.v1.accounts.retrieve_current().id
    gateway = StripeGateway(GatewayConfig(API_KEY, sandbox.url, max_network_retries=0, rate_limit_per_second=50))
    limiter = gateway.share_rate_limit(engine)
    assert isinstance(limiter, SharedRateLimiter) and gateway.limiter is limiter
    assert (limiter.paying_account, limiter.requests_per_second) == (platform, 50)
    assert _schedule(engine, platform) is None  # learning the account went through the in-process bucket
    gateway.available_balance()
    first = _schedule(engine, platform)
    assert first is not None
    list(gateway.transfers(None))  # a list page takes its slot too
    assert _schedule(engine, platform)[0] > first[0]


def test_the_sdks_own_retries_wait_on_the_limiter_too(sandbox, stripe_client):
    """Stripe counts a retried request like any other: a dropped connection and the SDK's retry of the
    same key are two slots."""
    destination = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    limiter = CountingLimiter()
    gateway = StripeGateway(
        GatewayConfig(API_KEY, sandbox.url, max_network_retries=2, timeout_seconds=10), limiter=limiter
    )
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "drop_after_commit", "count": 1})
    before = _v1_requests(sandbox)
    outcome = gateway.create_transfer(
        TransferRequest(1_000, "usd", destination, "limiter_retry", "retry test", {"purpose": "limiter_retry"}),
        "limiter-retry-key-1",
    )
    assert outcome.transfer is not None and outcome.replayed  # the SDK's retry was answered from the key
    assert _v1_requests(sandbox) - before == 2 == limiter.acquired
    assert gateway.request_counts["transfers.create"] == 1  # one call, two network attempts
