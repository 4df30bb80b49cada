"""Charges, top-ups and transfers paid from a charge (``source_transaction``), through the official SDK."""

from __future__ import annotations

import re

import pytest
import stripe

from .conftest import STARTING_BALANCES, balance_of, make_client

KEY_B = "sk_test_platform_b_0001"
DAY = 24 * 3600


def _pending(client: stripe.StripeClient, currency: str) -> int:
    return sum(p.amount for p in client.v1.balance.retrieve().pending if p.currency == currency)


@pytest.fixture
def platform_b(sandbox):
    """A second platform account with no money at all: whatever it spends comes from its charges."""
    sandbox.add_platform(KEY_B)
    return make_client(sandbox.url, api_key=KEY_B)


@pytest.fixture
def b_account(platform_b):
    return platform_b.v1.accounts.create(params={"type": "express", "capabilities": {"transfers": {"requested": True}}})


def test_a_charge_succeeds_and_its_funds_are_pending_until_available_on(sandbox, client):
    charge = client.v1.charges.create(
        params={
            "amount": 10_000,
            "currency": "USD",
            "source": "tok_visa",
            "description": "funding program p1",
            "metadata": {"program_id": "p1"},
        },
        options={"idempotency_key": "fund-p1-1"},
    )
    assert isinstance(charge, stripe.Charge) and re.fullmatch(r"ch_[A-Za-z0-9]{24}", charge.id)
    assert (charge.status, charge.paid, charge.captured) == ("succeeded", True, True)
    assert (charge.amount, charge.amount_captured, charge.amount_refunded, charge.currency) == (
        10_000,
        10_000,
        0,
        "usd",
    )
    assert charge.description == "funding program p1" and charge.metadata["program_id"] == "p1"
    assert charge.balance_transaction.startswith("txn_") and charge.livemode is False
    assert charge.payment_method_details.card.last4 == "4242" and charge.refunds.data == []
    fetched = client.v1.charges.retrieve(charge.id)
    assert fetched.to_dict() == charge.to_dict()
    assert [c.id for c in client.v1.charges.list().data] == [charge.id]
    replay = client.v1.charges.create(
        params={
            "amount": 10_000,
            "currency": "USD",
            "source": "tok_visa",
            "description": "funding program p1",
            "metadata": {"program_id": "p1"},
        },
        options={"idempotency_key": "fund-p1-1"},
    )
    assert replay.id == charge.id and replay.last_response.headers["Idempotent-Replayed"] == "true"
    # Stripe keeps card funds pending (2 days here): available is unchanged, pending holds the charge.
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] and _pending(client, "usd") == 10_000
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 2 * DAY - 60})
    assert _pending(client, "usd") == 10_000
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 60})
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] + 10_000 and _pending(client, "usd") == 0


def test_bypass_pending_token_and_top_ups_are_available_at_once(client, platform_b):
    charge = platform_b.v1.charges.create(params={"amount": 700, "currency": "eur", "source": "tok_bypassPending"})
    assert charge.payment_method_details.card.last4 == "0077"
    topup = platform_b.v1.topups.create(
        params={"amount": 5_000, "currency": "usd", "description": "program p2 funding", "metadata": {"p": "2"}}
    )
    assert isinstance(topup, stripe.Topup) and re.fullmatch(r"tu_[A-Za-z0-9]{24}", topup.id)
    assert (topup.status, topup.amount, topup.currency, topup.description) == (
        "succeeded",
        5_000,
        "usd",
        "program p2 funding",
    )
    assert topup.balance_transaction.startswith("txn_") and topup.expected_availability_date == topup.created
    assert platform_b.v1.topups.retrieve(topup.id).to_dict() == topup.to_dict()
    assert [t.id for t in platform_b.v1.topups.list().data] == [topup.id]
    assert balance_of(platform_b, "usd") == 5_000 and balance_of(platform_b, "eur") == 700
    assert _pending(platform_b, "usd") == _pending(platform_b, "eur") == 0
    # Another platform's charge or top-up does not exist for this key.
    for call, kind, obj_id in (
        (client.v1.charges.retrieve, "charge", charge.id),
        (client.v1.topups.retrieve, "topup", topup.id),
    ):
        with pytest.raises(stripe.InvalidRequestError) as info:
            call(obj_id)
        assert info.value.http_status == 404 and info.value.code == "resource_missing"
        assert info.value.user_message == f"No such {kind}: '{obj_id}'"
    assert client.v1.charges.list().data == [] and balance_of(client, "usd") == STARTING_BALANCES["usd"]


@pytest.mark.parametrize(
    "params, status, code, param",
    [
        ({"amount": 100, "currency": "usd"}, 400, "parameter_missing", "source"),
        ({"amount": 100, "currency": "usd", "source": "tok_unknown"}, 400, "resource_missing", "source"),
        ({"amount": 0, "currency": "usd", "source": "tok_visa"}, 400, "amount_too_small", "amount"),
        (
            {"amount": 100, "currency": "usd", "source": "tok_visa", "capture": False},
            400,
            "parameter_invalid_boolean",
            "capture",
        ),
    ],
)
def test_charge_refusals(client, params, status, code, param):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.charges.create(params=params)
    assert (info.value.http_status, info.value.code, info.value.param) == (status, code, param)


def test_a_transfer_draws_from_its_charge_even_with_nothing_available(platform_b, b_account):
    charge = platform_b.v1.charges.create(params={"amount": 1_000, "currency": "usd", "source": "tok_visa"})
    assert balance_of(platform_b, "usd") == 0
    with pytest.raises(stripe.InvalidRequestError) as info:  # without source_transaction: nothing to spend
        platform_b.v1.transfers.create(params={"amount": 1, "currency": "usd", "destination": b_account.id})
    assert info.value.code == "balance_insufficient"

    params = {"currency": "usd", "destination": b_account.id, "source_transaction": charge.id, "transfer_group": "g"}
    first = platform_b.v1.transfers.create(params={**params, "amount": 600}, options={"idempotency_key": "t1"})
    assert first.source_transaction == charge.id and first.amount == 600
    assert balance_of(platform_b, "usd") == 0 and _pending(platform_b, "usd") == 400
    with pytest.raises(stripe.InvalidRequestError) as info:  # 600 + 500 > 1000: the second is refused
        platform_b.v1.transfers.create(params={**params, "amount": 500}, options={"idempotency_key": "t2"})
    err = info.value
    assert (err.http_status, err.error.type, err.code, err.param) == (
        400,
        "invalid_request_error",
        "amount_too_large",
        "source_transaction",
    )
    assert err.user_message == (
        f"Insufficient funds in source transaction {charge.id}: transfers from it already "
        "total 600 usd of its 1000 usd; this transfer of 500 usd would exceed it."
    )
    with pytest.raises(stripe.InvalidRequestError) as info:  # executed, so stored under its key and replayed
        platform_b.v1.transfers.create(params={**params, "amount": 500}, options={"idempotency_key": "t2"})
    assert info.value.headers["Idempotent-Replayed"] == "true" and info.value.code == "amount_too_large"
    last = platform_b.v1.transfers.create(params={**params, "amount": 400}, options={"idempotency_key": "t3"})
    assert _pending(platform_b, "usd") == 0 and balance_of(platform_b, "usd") == 0
    assert {t.id: t.source_transaction for t in platform_b.v1.transfers.list(params={"transfer_group": "g"}).data} == {
        first.id: charge.id,
        last.id: charge.id,
    }

    # A reversal gives its money to the available balance, not back to the charge (gross amounts count).
    platform_b.v1.transfers.reversals.create(first.id, params={"amount": 100})
    assert balance_of(platform_b, "usd") == 100
    with pytest.raises(stripe.InvalidRequestError) as info:
        platform_b.v1.transfers.create(params={**params, "amount": 1})
    assert info.value.code == "amount_too_large"


def test_source_transaction_must_be_this_platforms_charge_in_the_transfer_currency(client, platform_b, b_account):
    charge = platform_b.v1.charges.create(params={"amount": 1_000, "currency": "usd", "source": "tok_visa"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        platform_b.v1.transfers.create(
            params={"amount": 100, "currency": "eur", "destination": b_account.id, "source_transaction": charge.id}
        )
    err = info.value
    assert (err.http_status, err.error.type, err.code, err.param) == (
        400,
        "invalid_request_error",
        None,
        "source_transaction",
    )
    assert err.user_message == (
        "The currency of source_transaction's balance transaction (usd) must be the same as the transfer currency (eur)"
    )

    a_charge = client.v1.charges.create(params={"amount": 1_000, "currency": "usd", "source": "tok_visa"})
    for unknown in (a_charge.id, "ch_doesnotexist"):  # another platform's charge, or none at all
        with pytest.raises(stripe.InvalidRequestError) as info:
            platform_b.v1.transfers.create(
                params={"amount": 100, "currency": "usd", "destination": b_account.id, "source_transaction": unknown}
            )
        assert (info.value.http_status, info.value.code, info.value.param) == (
            400,
            "resource_missing",
            "source_transaction",
        )
        assert info.value.user_message == f"No such charge: '{unknown}'"
    assert _pending(platform_b, "usd") == 1_000 and platform_b.v1.transfers.list().data == []


def test_once_available_a_charges_funds_are_the_balances(sandbox, platform_b, b_account):
    charge = platform_b.v1.charges.create(params={"amount": 1_000, "currency": "usd", "source": "tok_visa"})
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 2 * DAY})
    assert balance_of(platform_b, "usd") == 1_000
    platform_b.v1.transfers.create(params={"amount": 800, "currency": "usd", "destination": b_account.id})
    # The charge still allows 1000, but its money is in the available balance, and 800 of it left.
    with pytest.raises(stripe.InvalidRequestError) as info:
        platform_b.v1.transfers.create(
            params={"amount": 500, "currency": "usd", "destination": b_account.id, "source_transaction": charge.id}
        )
    assert info.value.code == "balance_insufficient"
    platform_b.v1.transfers.create(
        params={"amount": 200, "currency": "usd", "destination": b_account.id, "source_transaction": charge.id}
    )
    assert balance_of(platform_b, "usd") == 0


def test_transfers_cannot_be_listed_by_source_transaction_as_on_stripe(platform_b):
    with pytest.raises(stripe.InvalidRequestError) as info:
        platform_b.v1.transfers.list(params={"source_transaction": "ch_1"})
    assert (info.value.code, info.value.param) == ("parameter_unknown", "source_transaction")
