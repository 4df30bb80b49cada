"""Transfers, reversals and the platform balance, through the official SDK."""

from __future__ import annotations

import pytest
import stripe

from .conftest import STARTING_BALANCES, balance_of


def test_create_transfer_debits_balance(client, account):
    tr = client.v1.transfers.create(
        params={
            "amount": 1500,
            "currency": "usd",
            "destination": account.id,
            "transfer_group": "payout_2024_06",
            "description": "June commissions",
            "metadata": {"item_id": "it_1", "run": "r1"},
        }
    )
    assert isinstance(tr, stripe.Transfer)
    assert tr.id.startswith("tr_") and tr.amount == 1500 and tr.currency == "usd"
    assert tr.destination == account.id and tr.transfer_group == "payout_2024_06"
    assert tr.balance_transaction.startswith("txn_") and tr.destination_payment.startswith("py_")
    assert tr.reversed is False and tr.amount_reversed == 0
    assert tr.metadata["item_id"] == "it_1" and tr.description == "June commissions"
    assert tr.reversals.object == "list" and tr.reversals.data == []
    assert tr.last_response.request_id.startswith("req_")
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 1500
    assert balance_of(client, "eur") == STARTING_BALANCES["eur"]

    again = client.v1.transfers.retrieve(tr.id)
    assert again.id == tr.id and again.amount == 1500 and again.created == tr.created


def test_currency_is_normalised_and_balances_are_per_currency(client, account):
    tr = client.v1.transfers.create(params={"amount": 50_000, "currency": "EUR", "destination": account.id})
    assert tr.currency == "eur"
    assert balance_of(client, "eur") == 0
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"amount": 1, "currency": "eur", "destination": account.id})
    assert info.value.code == "balance_insufficient" and info.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as info:  # no gbp balance at all
        client.v1.transfers.create(params={"amount": 1, "currency": "gbp", "destination": account.id})
    assert info.value.code == "balance_insufficient"


def test_balance_insufficient_then_top_up(client, sandbox, account):
    too_much = STARTING_BALANCES["usd"] + 1
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"amount": too_much, "currency": "usd", "destination": account.id})
    assert info.value.code == "balance_insufficient"
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"]
    assert client.v1.transfers.list().data == []
    sandbox.admin("POST", "/_sandbox/balance", {"currency": "usd", "amount": 1})
    tr = client.v1.transfers.create(params={"amount": too_much, "currency": "usd", "destination": account.id})
    assert tr.amount == too_much and balance_of(client, "usd") == 0


@pytest.mark.parametrize(
    "params,code,param",
    [
        ({"currency": "usd"}, "parameter_missing", "amount"),
        ({"amount": "12.5", "currency": "usd"}, "parameter_invalid_integer", "amount"),
        ({"amount": 0, "currency": "usd"}, "amount_too_small", "amount"),
        ({"amount": 100}, "parameter_missing", "currency"),
        ({"amount": 100, "currency": "dollars"}, "invalid_currency", "currency"),
    ],
)
def test_validation_errors(client, account, params, code, param):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"destination": account.id, **params})
    assert info.value.http_status == 400
    assert info.value.code == code and info.value.param == param


def test_destination_errors(client, sandbox, make_account, account):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd"})
    assert info.value.code == "parameter_missing" and info.value.param == "destination"

    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": "acct_unknown"})
    assert info.value.http_status == 400
    assert info.value.code == "resource_missing" and info.value.param == "destination"

    no_caps = make_account(transfers=False)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": no_caps.id})
    assert info.value.code == "insufficient_capabilities_for_transfer"

    sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"transfers": "pending"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": account.id})
    assert info.value.code == "insufficient_capabilities_for_transfer"

    sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"transfers": "active", "invalid": True})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": account.id})
    assert info.value.code == "account_invalid"

    sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"invalid": False})
    assert (
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": account.id}).amount == 100
    )
    assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 100

    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.retrieve("tr_unknown")
    assert info.value.http_status == 404 and info.value.code == "resource_missing"


def test_list_filters_and_pagination(client, make_account):
    a, b = make_account(), make_account()
    made = []
    for i in range(7):
        dest = a if i % 2 == 0 else b
        group = "g1" if i < 4 else "g2"
        made.append(
            client.v1.transfers.create(
                params={
                    "amount": 100 + i,
                    "currency": "usd",
                    "destination": dest.id,
                    "transfer_group": group,
                    "metadata": {"i": str(i)},
                }
            )
        )
    newest_first = [t.id for t in reversed(made)]

    page = client.v1.transfers.list()
    assert [t.id for t in page.data] == newest_first and page.has_more is False
    assert page.url == "/v1/transfers"

    ids, after = [], None
    while True:
        params = {"limit": 3, **({"starting_after": after} if after else {})}
        page = client.v1.transfers.list(params=params)
        ids += [t.id for t in page.data]
        if not page.has_more:
            break
        after = page.data[-1].id
    assert ids == newest_first

    assert [t.id for t in client.v1.transfers.list(params={"limit": 2}).auto_paging_iter()] == newest_first
    by_dest = client.v1.transfers.list(params={"destination": a.id, "limit": 100})
    assert {t.id for t in by_dest.data} == {t.id for t in made if t.destination == a.id}
    by_group = client.v1.transfers.list(params={"transfer_group": "g1", "limit": 100})
    assert [t.id for t in by_group.data] == [t.id for t in reversed(made[:4])]
    both = client.v1.transfers.list(params={"transfer_group": "g2", "destination": b.id})
    assert [t.metadata["i"] for t in both.data] == ["5"]

    for bad in ({"limit": 0}, {"limit": 101}, {"starting_after": "tr_nope"}):
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.transfers.list(params=bad)


def test_reversals(client, account):
    tr = client.v1.transfers.create(params={"amount": 1000, "currency": "usd", "destination": account.id})
    before = balance_of(client, "usd")
    rev = client.v1.transfers.reversals.create(tr.id, params={"amount": 300})
    assert isinstance(rev, stripe.TransferReversal)
    assert rev.id.startswith("trr_") and rev.amount == 300 and rev.transfer == tr.id
    assert balance_of(client, "usd") == before + 300
    partial = client.v1.transfers.retrieve(tr.id)
    assert partial.amount_reversed == 300 and partial.reversed is False
    assert [r.id for r in partial.reversals.data] == [rev.id]

    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.reversals.create(tr.id, params={"amount": 701})
    assert info.value.http_status == 400

    rest = client.v1.transfers.reversals.create(tr.id)  # no amount: the rest
    assert rest.amount == 700
    full = client.v1.transfers.retrieve(tr.id)
    assert full.reversed is True and full.amount_reversed == 1000
    assert balance_of(client, "usd") == before + 1000
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.reversals.create(tr.id)
    listed = client.v1.transfers.reversals.list(tr.id)
    assert [r.id for r in listed.data] == [rest.id, rev.id]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.reversals.create("tr_missing")
    assert info.value.code == "resource_missing" and info.value.http_status == 404
