"""Idempotency exactly as Stripe documents it: replay, mismatch, in-flight 409, 24 h expiry."""

from __future__ import annotations

import threading
import time

import pytest
import stripe

from .conftest import STARTING_BALANCES, balance_of, raw_request


def _transfer_params(account, amount=700, item="it_1"):
    return {
        "amount": amount,
        "currency": "usd",
        "destination": account.id,
        "transfer_group": "payout_1",
        "metadata": {"item_id": item},
    }


def test_same_key_same_params_replays_without_executing(client, account):
    first = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "pay-it_1"})
    assert first.last_response.headers.get("Idempotent-Replayed") is None
    second = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "pay-it_1"})
    assert second.id == first.id and second.created == first.created
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert second.last_response.headers["Original-Request"] == first.last_response.request_id
    assert second.last_response.request_id != first.last_response.request_id
    assert len(client.v1.transfers.list().data) == 1
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 700


def test_same_key_different_params_is_idempotency_error(client, account):
    client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.transfers.create(params=_transfer_params(account, amount=701), options={"idempotency_key": "k"})
    assert info.value.http_status == 400 and info.value.error.type == "idempotency_error"
    # A key is scoped to its endpoint too.
    with pytest.raises(stripe.IdempotencyError):
        client.v1.accounts.create(params={"type": "express"}, options={"idempotency_key": "k"})
    assert len(client.v1.transfers.list().data) == 1


def test_concurrent_duplicate_gets_409(client, sandbox, account):
    sandbox.admin(
        "POST", "/_sandbox/faults", {"mode": "latency", "latency_ms": 1000, "count": 1, "path_prefix": "/v1/transfers"}
    )
    result = {}

    def first():
        result["tr"] = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "dup"})

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 5
    # The latency is slept after the key is claimed: once it has fired, the key is in flight.
    while sandbox.admin("GET", "/_sandbox/faults")["triggered"].get("latency", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(stripe.APIError) as info:
        client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "dup"})
    assert info.value.http_status == 409
    assert info.value.error.code == "idempotency_key_in_use"
    thread.join()
    assert result["tr"].id.startswith("tr_")
    replay = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "dup"})
    assert replay.id == result["tr"].id
    assert len(client.v1.transfers.list().data) == 1
    assert sandbox.admin("GET", "/_sandbox/stats")["idempotency_conflicts"] == 1


def test_key_expires_after_24_hours_of_sandbox_clock(client, sandbox, account):
    first = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "old"})
    clock = sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 23 * 3600})
    assert clock["offset_seconds"] == 23 * 3600
    still = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "old"})
    assert still.id == first.id and still.last_response.headers["Idempotent-Replayed"] == "true"

    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 3600})
    fresh = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "old"})
    assert fresh.id != first.id  # a NEW transfer, as on real Stripe: the ledger must guard
    assert fresh.last_response.headers.get("Idempotent-Replayed") is None
    assert fresh.created >= first.created + 24 * 3600
    assert len(client.v1.transfers.list(params={"transfer_group": "payout_1"}).data) == 2
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 1400


def test_validation_errors_are_not_stored(client, account):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(
            params={"currency": "usd", "destination": account.id}, options={"idempotency_key": "fixme"}
        )
    assert info.value.code == "parameter_missing"
    tr = client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "fixme"})
    assert tr.last_response.headers.get("Idempotent-Replayed") is None
    assert tr.amount == 700


def test_business_errors_are_stored_and_replayed(client, sandbox, account):
    params = _transfer_params(account, amount=STARTING_BALANCES["usd"] + 1)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params=params, options={"idempotency_key": "broke"})
    assert info.value.code == "balance_insufficient"
    sandbox.admin("POST", "/_sandbox/balance", {"currency": "usd", "amount": 10})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params=params, options={"idempotency_key": "broke"})
    assert info.value.code == "balance_insufficient"  # endpoint had begun: the error is stored
    assert info.value.headers["Idempotent-Replayed"] == "true"
    assert client.v1.transfers.create(params=params, options={"idempotency_key": "broke-2"}).id


def test_stored_500_is_replayed(client, sandbox, account):
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "error_500_after_commit", "count": 1})
    with pytest.raises(stripe.APIError) as info:
        client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "boom"})
    assert info.value.http_status == 500 and info.value.error.type == "api_error"
    assert info.value.headers["Stripe-Should-Retry"] == "false"
    with pytest.raises(stripe.APIError) as info:
        client.v1.transfers.create(params=_transfer_params(account), options={"idempotency_key": "boom"})
    assert info.value.http_status == 500
    assert info.value.headers["Idempotent-Replayed"] == "true"
    # The money did move: only the transfer list tells.
    listed = client.v1.transfers.list(params={"transfer_group": "payout_1"}).data
    assert len(listed) == 1 and listed[0].metadata["item_id"] == "it_1"
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 700


def test_post_without_key_from_raw_http_just_executes(sandbox, client, account):
    body = f"amount=5&currency=usd&destination={account.id}&metadata[item_id]=raw".encode()
    headers = {"Authorization": "Bearer sk_test_x", "Content-Type": "application/x-www-form-urlencoded"}
    s1, h1, b1 = raw_request(sandbox.url + "/v1/transfers", "POST", body, headers)
    s2, h2, b2 = raw_request(sandbox.url + "/v1/transfers", "POST", body, headers)
    assert s1 == s2 == 200 and b1["id"] != b2["id"] and b1["metadata"] == {"item_id": "raw"}
    assert "Idempotent-Replayed" not in h2
