"""A local Stripe Connect sandbox: a real HTTP server speaking Stripe's v1 wire format.

The payout engine talks to Stripe only through the official SDK; tests, the demo and the
benchmarks point that SDK at this sandbox. It implements what the engine uses -- connected
accounts, transfers (with Stripe's idempotency semantics), transfer reversals, the platform
balance, charges and top-ups that fund it, and transfers paid from a charge (``source_transaction``)
-- plus an admin path (``/_sandbox/...``) to create platform accounts, move the clock, top up a
balance, change an account's readiness and inject faults (latency, 500s before/after commit,
dropped connections, 429 storms). State lives in one SQLite file, so a restarted sandbox sees the
same world.

Several platform accounts, one per API key (``platforms.py``): each has its own account id
(``GET /v1/account``), connected accounts, balance, transfers, charges, top-ups, idempotency keys
and rate limit; another platform's objects answer as Stripe answers objects that do not exist
(403 ``account_invalid`` for a connected account, 404/400 ``resource_missing`` otherwise). The
default platform takes any ``sk_test_`` key no other platform owns, unless ``api_keys`` names its
keys; more platforms come from ``POST /_sandbox/platforms {"api_key": ..., "balances": {...}}``
(``SandboxServer.add_platform``) or ``platforms=`` / ``--platform`` at start; unknown keys get 401.

Funding (``funding.py``, ``balances.py``): ``POST /v1/charges`` (test tokens; funds pending 2 days
on the sandbox clock, at once with ``tok_bypassPending``) and ``POST /v1/topups`` (available at
once). A transfer with ``source_transaction=ch_...`` must name a charge of the same platform (400
``resource_missing``, param ``source_transaction``), in the charge's currency (400, no code, param
``source_transaction``, Stripe's "The currency of source_transaction's balance transaction (usd)
must be the same as the transfer currency (eur)"), and the transfers from one charge may not total
more than its amount (400 ``amount_too_large``, param ``source_transaction``, "Insufficient funds
in source transaction ch_...: ..." -- the sandbox's choice of code and words; final, never
``balance_insufficient``); it draws on the charge's funds, so it succeeds while the platform's
available balance is 0.

Plain Python and the standard library only (no Dagster, no web framework).

Pointing the SDK at it::

    import stripe
    from sorae_sandbox import SandboxServer

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
        merchant = sandbox.add_platform("sk_test_merchant_0001", {"usd": 50_000})  # -> "acct_..."

From the command line: ``python -m sorae_sandbox --port 12111 --state sandbox.sqlite3
--balance usd=100000000 [--platform sk_test_merchant_0001:usd=50000]``, then
``base_addresses={"api": "http://127.0.0.1:12111"}``.
"""

from .server import SandboxServer, run_sandbox

__all__ = ["SandboxServer", "run_sandbox"]
