"""Several platform accounts in one sandbox, one per API key, each with its own world (as on Stripe)."""

from __future__ import annotations

import json
import re

import pytest
import stripe

from sorae_sandbox import SandboxServer

from .conftest import STARTING_BALANCES, balance_of, make_client, raw_request

KEY_B = "sk_test_platform_b_0001"
KEY_C = "sk_test_platform_c_0002"


def _connected(client: stripe.StripeClient):
    return client.v1.accounts.create(params={"type": "express", "capabilities": {"transfers": {"requested": True}}})


def test_each_platform_has_its_own_account_id_balance_and_connected_accounts(sandbox, client):
    b_id = sandbox.add_platform(KEY_B, {"usd": 7_000})
    b = make_client(sandbox.url, api_key=KEY_B)
    a_id = client.v1.accounts.retrieve_current().id
    assert b.v1.accounts.retrieve_current().id == b_id != a_id
    assert (
        balance_of(client, "usd") == STARTING_BALANCES["usd"] and balance_of(client, "eur") == STARTING_BALANCES["eur"]
    )
    assert {x.currency: x.amount for x in b.v1.balance.retrieve().available} == {"usd": 7_000}

    a_acct, b_acct = _connected(client), _connected(b)
    assert [x.id for x in client.v1.accounts.list().data] == [a_acct.id]
    assert [x.id for x in b.v1.accounts.list().data] == [b_acct.id]
    # A's connected account seen with B's key: what Stripe answers for an account not connected to the platform.
    with pytest.raises(stripe.PermissionError) as info:
        b.v1.accounts.retrieve(a_acct.id)
    assert info.value.http_status == 403 and info.value.error.code == "account_invalid"
    assert re.fullmatch(
        rf"The provided key 'sk_test_\*+0001' does not have access to account '{a_acct.id}' "
        r"\(or that account does not exist\)\. Application access may have been revoked\.",
        info.value.user_message,
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        b.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": a_acct.id})
    assert (info.value.http_status, info.value.code, info.value.param) == (400, "resource_missing", "destination")
    assert info.value.user_message == f"No such destination: '{a_acct.id}'"
    assert balance_of(b, "usd") == 7_000  # nothing moved

    tr = client.v1.transfers.create(
        params={"amount": 250, "currency": "usd", "destination": a_acct.id, "transfer_group": "g"}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        b.v1.transfers.retrieve(tr.id)
    assert info.value.http_status == 404 and info.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        b.v1.transfers.reversals.create(tr.id, params={"amount": 10})
    assert b.v1.transfers.list(params={"transfer_group": "g"}).data == []
    assert [x.id for x in client.v1.transfers.list(params={"transfer_group": "g"}).data] == [tr.id]
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 250 and balance_of(b, "usd") == 7_000
    # The admin path reaches any platform's connected account (ids are unique).
    sandbox.admin("POST", f"/_sandbox/accounts/{b_acct.id}", {"transfers": "pending"})
    assert b.v1.accounts.retrieve(b_acct.id).capabilities.transfers == "pending"


def test_the_same_idempotency_key_under_two_platforms_is_two_requests(sandbox, client):
    sandbox.add_platform(KEY_B, {"usd": 1_000})
    b = make_client(sandbox.url, api_key=KEY_B)
    a_acct, b_acct = _connected(client), _connected(b)
    a_first = client.v1.transfers.create(
        params={"amount": 300, "currency": "usd", "destination": a_acct.id},
        options={"idempotency_key": "month-2024-06-aff_1"},
    )
    # Other parameters under the same key: on another platform it is a new request, not idempotency_error.
    b_first = b.v1.transfers.create(
        params={"amount": 400, "currency": "usd", "destination": b_acct.id},
        options={"idempotency_key": "month-2024-06-aff_1"},
    )
    assert b_first.id != a_first.id and b_first.last_response.headers.get("Idempotent-Replayed") is None
    b_again = b.v1.transfers.create(
        params={"amount": 400, "currency": "usd", "destination": b_acct.id},
        options={"idempotency_key": "month-2024-06-aff_1"},
    )
    assert b_again.id == b_first.id and b_again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):  # within one platform the key still binds its parameters
        client.v1.transfers.create(
            params={"amount": 400, "currency": "usd", "destination": a_acct.id},
            options={"idempotency_key": "month-2024-06-aff_1"},
        )
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 300 and balance_of(b, "usd") == 600


def test_each_platform_has_its_own_rate_limit_and_faults_can_target_one(tmp_path):
    with SandboxServer(state_path=tmp_path / "s.sqlite3", rate_limit=5, platforms={KEY_B: {}}) as server:
        a, b = make_client(server.url), make_client(server.url, api_key=KEY_B)
        a_id, b_id = a.v1.accounts.retrieve_current().id, b.v1.accounts.retrieve_current().id
        limited = 0
        for _ in range(12):
            try:
                a.v1.balance.retrieve()
            except stripe.RateLimitError as exc:
                assert exc.http_status == 429 and exc.error.code == "rate_limit"
                limited += 1
        assert limited  # A went over its limit...
        for _ in range(4):  # ...B's bucket is its own: full (5), one token already spent above
            assert b.v1.balance.retrieve().object == "balance"
        stats = server.admin("GET", "/_sandbox/stats")["platforms"]
        assert stats[a_id]["rate_limited"] == limited and stats[b_id]["rate_limited"] == 0
        assert stats[b_id]["v1_requests"] == 5 and 1 <= stats[b_id]["peak_requests_in_1s"] <= 5

    with SandboxServer(
        state_path=tmp_path / "f.sqlite3", platforms={KEY_B: {"usd": 100}}, balances={"usd": 100}
    ) as server:
        a, b = make_client(server.url), make_client(server.url, api_key=KEY_B)
        a_acct, b_acct = _connected(a), _connected(b)
        b_id = b.v1.accounts.retrieve_current().id
        server.admin("POST", "/_sandbox/faults", {"mode": "rate_limit_429", "platform": b_id})
        assert a.v1.transfers.create(params={"amount": 1, "currency": "usd", "destination": a_acct.id}).amount == 1
        with pytest.raises(stripe.RateLimitError):
            b.v1.transfers.create(params={"amount": 1, "currency": "usd", "destination": b_acct.id})
        with pytest.raises(RuntimeError, match="400"):
            server.admin("POST", "/_sandbox/faults", {"mode": "rate_limit_429", "platform": "nope"})


def test_keys_of_a_closed_sandbox_and_unknown_keys_answer_401_like_stripe(tmp_path):
    key_a = "sk_test_platform_a_0000"
    with SandboxServer(state_path=tmp_path / "s.sqlite3", api_keys=[key_a], platforms={KEY_B: {"usd": 5}}) as server:
        platforms = server.admin("GET", "/_sandbox/platforms")["platforms"]
        default = next(p for p in platforms if p["default"])
        assert default["open"] is False and default["api_keys"] == ["sk_test_***********0000"]
        assert make_client(server.url, api_key=key_a).v1.accounts.retrieve_current().id == default["id"]
        assert balance_of(make_client(server.url, api_key=KEY_B), "usd") == 5
        with pytest.raises(stripe.AuthenticationError) as info:
            make_client(server.url, api_key="sk_test_somebody_else_9999").v1.balance.retrieve()
        err = info.value
        assert err.http_status == 401 and err.error.type == "invalid_request_error"
        assert err.user_message == "Invalid API Key provided: sk_test_**************9999"
        status, headers, body = raw_request(
            server.url + "/v1/account", headers={"Authorization": "Bearer sk_test_somebody_else_9999"}
        )
        assert status == 401 and headers["Request-Id"].startswith("req_") and "somebody" not in json.dumps(body)


def test_an_open_default_platform_takes_any_test_key_but_not_another_platforms_key(sandbox):
    b_id = sandbox.add_platform(KEY_B)
    default_id = make_client(sandbox.url).v1.accounts.retrieve_current().id
    assert make_client(sandbox.url, api_key="sk_test_whatever_key").v1.accounts.retrieve_current().id == default_id
    assert make_client(sandbox.url, api_key=KEY_B).v1.accounts.retrieve_current().id == b_id
    with pytest.raises(stripe.AuthenticationError):
        make_client(sandbox.url, api_key="pk_test_not_a_secret_key").v1.balance.retrieve()


def test_admin_platform_endpoint_is_idempotent_per_key_and_never_echoes_keys(sandbox):
    created = sandbox.admin("POST", "/_sandbox/platforms", {"api_key": KEY_B, "balances": {"usd": 100}})
    assert created["new"] is True and created["id"].startswith("acct_") and created["default"] is False
    assert created["balance"] == {"available": {"usd": 100}, "pending": {}}
    again = sandbox.admin("POST", "/_sandbox/platforms", {"api_key": KEY_B, "balances": {"usd": 999, "eur": 7}})
    assert again["new"] is False and again["id"] == created["id"]
    assert again["balance"]["available"] == {"eur": 7, "usd": 100}  # seeds only currencies it lacked
    assert sandbox.admin("GET", f"/_sandbox/platforms/{created['id']}")["api_keys"] == ["sk_test_***********0001"]
    listed = sandbox.admin("GET", "/_sandbox/platforms")["platforms"]
    assert [p["default"] for p in listed] == [True, False]
    assert KEY_B not in json.dumps(listed) and KEY_B not in json.dumps(created)
    b_balance = sandbox.admin("GET", f"/_sandbox/balance?platform={created['id']}")
    assert {x["currency"]: x["amount"] for x in b_balance["available"]} == {"eur": 7, "usd": 100}
    sandbox.admin("POST", "/_sandbox/balance", {"currency": "usd", "amount": 50, "platform": created["id"]})
    assert balance_of(make_client(sandbox.url, api_key=KEY_B), "usd") == 150
    assert balance_of(make_client(sandbox.url), "usd") == STARTING_BALANCES["usd"]
    for bad in (
        {},
        {"api_key": "pk_test_publishable_key"},
        {"api_key": "sk_test_x"},
        {"api_key": KEY_C, "balances": {"usd": -1}},
        {"api_key": KEY_C, "colour": "red"},
    ):
        with pytest.raises(RuntimeError, match="400"):
            sandbox.admin("POST", "/_sandbox/platforms", bad)
    with pytest.raises(RuntimeError, match="404"):
        sandbox.admin("GET", "/_sandbox/balance?platform=acct_unknown")


def test_platforms_survive_a_restart_and_a_reset_keeps_only_the_start_up_ones(tmp_path):
    state = tmp_path / "s.sqlite3"
    with SandboxServer(state_path=state, platforms={KEY_B: {"usd": 10}}) as server:
        c_id = server.add_platform(KEY_C, {"usd": 20})
        b_id = make_client(server.url, api_key=KEY_B).v1.accounts.retrieve_current().id
        acct = _connected(make_client(server.url, api_key=KEY_C))
    with SandboxServer(state_path=state, platforms={KEY_B: {"usd": 10}}) as server:
        c = make_client(server.url, api_key=KEY_C)
        assert c.v1.accounts.retrieve_current().id == c_id and c.v1.accounts.retrieve(acct.id).id == acct.id
        assert make_client(server.url, api_key=KEY_B).v1.accounts.retrieve_current().id == b_id
        server.admin("POST", "/_sandbox/reset")
        # KEY_C was an admin-made platform: gone, so the open default platform answers to it now.
        default_id = make_client(server.url).v1.accounts.retrieve_current().id
        assert c.v1.accounts.retrieve_current().id == default_id
        new_b = make_client(server.url, api_key=KEY_B)
        assert new_b.v1.accounts.retrieve_current().id not in (b_id, default_id)  # re-created, a new account
        assert balance_of(new_b, "usd") == 10


def test_a_start_up_that_fails_registers_no_key(tmp_path):
    state = tmp_path / "s.sqlite3"
    with SandboxServer(state_path=state, platforms={KEY_B: {}}):
        pass
    with pytest.raises(ValueError, match="already belongs to platform"):  # KEY_B cannot be the default's too
        SandboxServer(state_path=state, api_keys=["sk_test_platform_a_0000", KEY_B]).start()
    with SandboxServer(state_path=state, api_keys=[KEY_C]) as server:
        with pytest.raises(stripe.AuthenticationError):  # the refused start-up registered nothing
            make_client(server.url, api_key="sk_test_platform_a_0000").v1.balance.retrieve()
        assert (
            make_client(server.url, api_key=KEY_C).v1.accounts.retrieve_current().id
            != make_client(server.url, api_key=KEY_B).v1.accounts.retrieve_current().id
        )
