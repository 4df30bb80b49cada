"""A local Stripe Connect sandbox: a real HTTP server speaking Stripe's v1 wire format.

The payout engine talks to Stripe only through the official SDK; tests, the demo and the
benchmarks point that SDK at this sandbox. It implements what the engine uses -- connected
accounts, transfers (with Stripe's idempotency semantics), transfer reversals and the platform
balance -- plus an admin path (``/_sandbox/...``) to move the clock, top up the balance, change an
account's readiness and inject faults (latency, 500s before/after commit, dropped connections,
429 storms). State lives in one SQLite file, so a restarted sandbox sees the same world.

Plain Python and the standard library only (no Dagster, no web framework).

Pointing the SDK at it::

    import stripe
    from sorae_payouts.sandbox import SandboxServer

    with SandboxServer(balances={"usd": 1_000_000_00}) as sandbox:
        client = stripe.StripeClient(
            api_key="sk_test_sandbox",               # any key starting with sk_test_
            base_addresses={"api": sandbox.url},     # e.g. http://127.0.0.1:54321
            max_network_retries=0,                   # or more: the SDK then retries 409/5xx/drops
        )
        acct = client.v1.accounts.create(params={
            "type": "express", "country": "US",
            "capabilities": {"transfers": {"requested": True}}})
        tr = client.v1.transfers.create(
            params={"amount": 1500, "currency": "usd", "destination": acct.id,
                    "transfer_group": "payout_2024_06", "metadata": {"item_id": "it_1"}},
            options={"idempotency_key": "payout-2024-06-it_1-attempt-1"})
        replayed = tr.last_response.headers.get("Idempotent-Replayed")  # "true" on a replay
        sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 25 * 3600})

From the command line: ``python -m sorae_payouts.sandbox --port 12111 --state sandbox.sqlite3
--balance usd=100000000``, then ``base_addresses={"api": "http://127.0.0.1:12111"}``.
"""

from .server import SandboxServer, run_sandbox

__all__ = ["SandboxServer", "run_sandbox"]
