"""Fault injection, rate limiting, latency and concurrency: what the engine must survive."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from sorae_sandbox import SandboxServer

from .conftest import STARTING_BALANCES, balance_of, make_client


def _params(account, item="it_1", amount=250):
    return {
        "amount": amount,
        "currency": "usd",
        "destination": account.id,
        "transfer_group": "run_1",
        "metadata": {"item_id": item},
    }


def test_drop_after_commit_transfer_exists_and_key_replays(client, sandbox, account):
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "drop_after_commit", "count": 1, "path_prefix": "/v1/transfers"})
    with pytest.raises(stripe.APIConnectionError):
        client.v1.transfers.create(params=_params(account), options={"idempotency_key": "drop"})
    listed = client.v1.transfers.list(params={"transfer_group": "run_1"}).data
    assert len(listed) == 1 and listed[0].metadata["item_id"] == "it_1"
    replay = client.v1.transfers.create(params=_params(account), options={"idempotency_key": "drop"})
    assert replay.id == listed[0].id
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert sandbox.admin("GET", "/_sandbox/stats")["dropped_connections"] == 1


def test_sdk_retries_recover_a_dropped_answer_without_duplicating(sandbox, account):
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "drop_after_commit", "count": 1})
    retrying = make_client(sandbox.url, retries=1)
    tr = retrying.v1.transfers.create(params=_params(account), options={"idempotency_key": "r"})
    assert tr.last_response.headers["Idempotent-Replayed"] == "true"
    assert [t.id for t in retrying.v1.transfers.list().data] == [tr.id]


def test_500_before_commit_creates_nothing_and_retry_executes(client, sandbox, account):
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "error_500_before_commit", "count": 1})
    with pytest.raises(stripe.APIError) as info:
        client.v1.transfers.create(params=_params(account), options={"idempotency_key": "b"})
    assert info.value.http_status == 500
    assert client.v1.transfers.list().data == []
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"]
    tr = client.v1.transfers.create(params=_params(account), options={"idempotency_key": "b"})
    assert tr.last_response.headers.get("Idempotent-Replayed") is None
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 250


def test_500_after_commit_transfer_exists(client, sandbox, account):
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "error_500_after_commit", "count": 1})
    with pytest.raises(stripe.APIError):
        client.v1.transfers.create(params=_params(account), options={"idempotency_key": "a"})
    assert len(client.v1.transfers.list(params={"destination": account.id}).data) == 1
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 250


def test_429_storm_is_not_stored(client, sandbox, account):
    faults = sandbox.admin("POST", "/_sandbox/faults", {"mode": "rate_limit_429", "count": 3})
    assert faults["faults"][0]["mode"] == "rate_limit_429"
    for _ in range(3):
        with pytest.raises(stripe.RateLimitError) as info:
            client.v1.transfers.create(params=_params(account), options={"idempotency_key": "s"})
        assert info.value.http_status == 429 and info.value.error.code == "rate_limit"
    tr = client.v1.transfers.create(params=_params(account), options={"idempotency_key": "s"})
    assert tr.last_response.headers.get("Idempotent-Replayed") is None
    assert sandbox.admin("GET", "/_sandbox/stats")["rate_limited"] == 3
    assert sandbox.admin("DELETE", "/_sandbox/faults")["faults"] == []


def test_seeded_faults_are_deterministic(client, sandbox, account):
    def run(tag):
        sandbox.admin("DELETE", "/_sandbox/faults")
        sandbox.admin("POST", "/_sandbox/faults", {"mode": "error_500_before_commit", "probability": 0.5, "seed": 42})
        outcome = []
        for i in range(12):
            try:
                client.v1.transfers.create(params=_params(account, item=f"{tag}{i}", amount=1))
                outcome.append("ok")
            except stripe.APIError:
                outcome.append("500")
        return outcome

    first, second = run("a"), run("b")
    assert first == second and "ok" in first and "500" in first


def test_bad_fault_definitions_are_rejected(sandbox):
    for bad in ({"mode": "explode"}, {"mode": "latency"}, {"mode": "error_500_after_commit", "probability": 2}):
        with pytest.raises(RuntimeError, match="400"):
            sandbox.admin("POST", "/_sandbox/faults", bad)


def test_rate_limit_returns_429(tmp_path):
    with SandboxServer(state_path=tmp_path / "s.sqlite3", rate_limit=5) as server:
        client = make_client(server.url)
        errors = []
        for _ in range(12):
            try:
                client.v1.balance.retrieve()
            except stripe.RateLimitError as exc:
                errors.append(exc)
        assert errors and all(e.http_status == 429 for e in errors)
        assert errors[0].error.code == "rate_limit"
        time.sleep(0.5)  # the bucket refills at 5 tokens/s
        assert client.v1.balance.retrieve().object == "balance"


def test_latency_overlaps_and_100_concurrent_transfers(tmp_path):
    with SandboxServer(state_path=tmp_path / "c.sqlite3", latency_ms=150, balances={"usd": 10_000}) as server:
        client = make_client(server.url)
        acct = client.v1.accounts.create(params={"capabilities": {"transfers": {"requested": True}}})
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=100) as pool:
            results = list(
                pool.map(
                    lambda i: client.v1.transfers.create(
                        params=_params(acct, item=f"it_{i}", amount=100), options={"idempotency_key": f"k{i}"}
                    ),
                    range(100),
                )
            )
        elapsed = time.monotonic() - start
        assert len({t.id for t in results}) == 100
        # Serialized sleeping would take 15 s; overlapping sleeps keep it near one latency.
        assert elapsed < 5, elapsed
        assert balance_of(client, "usd") == 0
        stats = server.admin("GET", "/_sandbox/stats")
        assert stats["transfers"] == 100 and stats["peak_in_flight"] > 10
        with pytest.raises(stripe.InvalidRequestError) as info:  # drained to exactly zero
            client.v1.transfers.create(params=_params(acct, amount=1))
        assert info.value.code == "balance_insufficient"
