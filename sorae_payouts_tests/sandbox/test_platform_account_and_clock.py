"""GET /v1/account (the platform behind the key) and a sandbox clock running ahead of the engine's."""

from __future__ import annotations

import stripe

from sorae_sandbox import SandboxServer

KEY = "sk_test_platform"
DAY = 24 * 3600


def _client(server) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": server.url}, max_network_retries=0)


def test_platform_account_is_stable_per_state_and_answers_like_stripe(tmp_path):
    state = tmp_path / "state.sqlite3"
    with SandboxServer(state_path=state) as server:
        account = _client(server).v1.accounts.retrieve_current()
        assert account.object == "account" and account.id.startswith("acct_")
        assert account.charges_enabled and account.payouts_enabled and account.capabilities.transfers == "active"
        assert _client(server).v1.accounts.retrieve_current().id == account.id
        server.admin("POST", "/_sandbox/reset")
        after_reset = _client(server).v1.accounts.retrieve_current().id
        assert after_reset != account.id  # a reset is a new Stripe account
    with SandboxServer(state_path=state) as restarted:
        assert _client(restarted).v1.accounts.retrieve_current().id == after_reset
    with SandboxServer() as other:
        assert _client(other).v1.accounts.retrieve_current().id != after_reset


def test_clock_offset_option_and_pruning_of_keys_older_than_24h_on_the_sandbox_clock(tmp_path):
    with SandboxServer(
        state_path=tmp_path / "s.sqlite3", clock_offset_seconds=25 * 3600, balances={"usd": 10_000}
    ) as server:
        assert server.admin("GET", "/_sandbox/clock")["offset_seconds"] == 25 * 3600
        client = _client(server)
        dest = client.v1.accounts.create(
            params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
        ).id
        params = {"amount": 100, "currency": "usd", "destination": dest}
        first = client.v1.transfers.create(params=params, options={"idempotency_key": "k1"})
        replay = client.v1.transfers.create(params=params, options={"idempotency_key": "k1"})
        assert replay.id == first.id and replay.last_response.headers.get("Idempotent-Replayed") == "true"
        assert server.admin("GET", "/_sandbox/stats")["idempotency_keys"] >= 1
        server.admin("POST", "/_sandbox/clock/advance", {"seconds": DAY})
        assert server.admin("GET", "/_sandbox/stats")["idempotency_keys"] == 0  # pruned by ITS clock
        again = client.v1.transfers.create(params=params, options={"idempotency_key": "k1"})
        assert again.id != first.id and again.last_response.headers.get("Idempotent-Replayed") is None
