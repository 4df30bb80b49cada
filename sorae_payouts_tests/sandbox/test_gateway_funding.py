"""`StripeGateway` against the sandbox: transfers paid from a charge, charge and top-up lookups, per platform."""

from __future__ import annotations

import pytest

from sorae_payouts.stripe_gateway import (
    ChargeRecord,
    Disposition,
    GatewayConfig,
    StripeGateway,
    TopupRecord,
    TransferRequest,
)

from .conftest import make_client

KEY_B = "sk_test_platform_b_0001"


def _gateway(url: str, key: str) -> StripeGateway:
    return StripeGateway(GatewayConfig(key, url, max_network_retries=0, rate_limit_per_second=1000))


@pytest.fixture
def b(sandbox):
    sandbox.add_platform(KEY_B)
    client = make_client(sandbox.url, api_key=KEY_B)
    account = client.v1.accounts.create(params={"type": "express", "capabilities": {"transfers": {"requested": True}}})
    return client, account.id, _gateway(sandbox.url, KEY_B)


def _request(destination: str, amount: int, currency: str = "usd", source: str | None = None) -> TransferRequest:
    return TransferRequest(
        amount,
        currency,
        destination,
        "program_b_2024_06",
        "commissions",
        {"item": str(amount)},
        source_transaction=source,
    )


def test_transfers_paid_from_a_charge_and_its_refusals(b):
    client, destination, gateway = b
    charge = client.v1.charges.create(params={"amount": 1_000, "currency": "usd", "source": "tok_visa"})
    paid = gateway.create_transfer(_request(destination, 700, source=charge.id), "k-700")
    assert paid.disposition is Disposition.POSTED and paid.transfer.source_transaction == charge.id

    over = gateway.create_transfer(_request(destination, 301, source=charge.id), "k-301")
    assert over.disposition is Disposition.FAILED and over.transfer is None
    assert (over.error.code, over.error.http_status) == ("amount_too_large", 400)
    assert over.error.message.startswith(f"Insufficient funds in source transaction {charge.id}")
    mismatch = gateway.create_transfer(_request(destination, 10, currency="eur", source=charge.id), "k-eur")
    assert mismatch.disposition is Disposition.FAILED and mismatch.error.code == "http_400"
    unknown = gateway.create_transfer(_request(destination, 10, source="ch_missing"), "k-missing")
    assert unknown.disposition is Disposition.FAILED and unknown.error.code == "resource_missing"
    # No source_transaction: not sent at all, so the platform's (empty) available balance pays.
    plain = gateway.create_transfer(_request(destination, 10), "k-plain")
    assert plain.disposition is Disposition.FAILED_RETRYABLE and plain.error.code == "balance_insufficient"

    rest = gateway.create_transfer(_request(destination, 300, source=charge.id), "k-300")
    assert rest.disposition is Disposition.POSTED
    other = client.v1.charges.create(params={"amount": 50, "currency": "usd", "source": "tok_bypassPending"})
    plain = gateway.create_transfer(_request(destination, 50), "k-plain-2")  # spends `other`, now available
    assert plain.disposition is Disposition.POSTED and plain.transfer.source_transaction is None
    of_charge = list(gateway.transfers("program_b_2024_06", source_transaction=charge.id))
    assert sorted(t.amount_minor for t in of_charge) == [300, 700]
    assert {t.transfer_id for t in gateway.transfers("program_b_2024_06")} == {
        paid.transfer.transfer_id,
        rest.transfer.transfer_id,
        plain.transfer.transfer_id,
    }
    assert list(gateway.transfers("program_b_2024_06", source_transaction=other.id)) == []


def test_charge_and_topup_lookups_belong_to_the_keys_platform(sandbox, b):
    client, _, gateway = b
    charge = client.v1.charges.create(params={"amount": 1_234, "currency": "EUR", "source": "tok_visa"})
    topup = client.v1.topups.create(params={"amount": 5_000, "currency": "jpy"})
    found = gateway.charge(charge.id)
    assert found == ChargeRecord(charge.id, 1_234, "eur", "succeeded", True, True, charge.created, 0)
    assert found.charge_id == charge.id
    assert gateway.topup(topup.id) == TopupRecord(topup.id, 5_000, "jpy", "succeeded", topup.created)
    assert gateway.charge("ch_missing") is None and gateway.topup("tu_missing") is None
    default = _gateway(sandbox.url, "sk_test_sandbox")  # the default platform cannot see B's objects
    assert default.charge(charge.id) is None and default.topup(topup.id) is None
    assert gateway.paying_account() != default.paying_account()
    assert gateway.request_counts["charges.retrieve"] == 2 and gateway.request_counts["topups.retrieve"] == 2
