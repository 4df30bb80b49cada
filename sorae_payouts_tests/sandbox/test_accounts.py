"""Connected accounts: creation (instant onboarding), retrieval, listing, readiness changes, auth."""

from __future__ import annotations

import re

import pytest
import stripe

from .conftest import make_client, raw_request


def test_account_created_with_transfers_requested_is_ready(client, account):
    assert isinstance(account, stripe.Account)
    assert account.id.startswith("acct_")
    assert account.capabilities.transfers == "active"
    assert account.payouts_enabled is True and account.charges_enabled is True
    assert account.requirements.currently_due == []
    assert account.requirements.disabled_reason is None
    assert account.livemode is False and isinstance(account.created, int)

    fetched = client.v1.accounts.retrieve(account.id)
    assert fetched.id == account.id
    assert fetched.email == "affiliate@example.com"
    assert fetched.metadata["affiliate_id"] == "aff_1"


def test_account_without_capability_is_not_ready(make_account):
    acct = make_account(transfers=False)
    assert "transfers" not in acct.capabilities
    assert acct.payouts_enabled is False
    assert acct.requirements.currently_due  # onboarding not done


def test_unknown_account_is_a_403_account_invalid_like_stripe(client):
    """Stripe answers an unknown (or not connected) account with 403 permission_error/account_invalid,
    which the SDK raises as PermissionError; the key is masked in the message."""
    with pytest.raises(stripe.PermissionError) as info:
        client.v1.accounts.retrieve("acct_doesnotexist")
    err = info.value
    # stripe-python 16 sets `code` only on InvalidRequestError/CardError: read it from the error object.
    assert err.http_status == 403 and err.error.code == "account_invalid" and err.error.type == "permission_error"
    assert err.error.param is None
    assert re.fullmatch(
        r"The provided key 'sk_test_\*+dbox' does not have access to account 'acct_doesnotexist' "
        r"\(or that account does not exist\)\. Application access may have been revoked\.",
        err.user_message,
    )
    assert err.request_id and err.request_id.startswith("req_")


def test_list_accounts_newest_first_with_pagination(client, make_account):
    created = [make_account().id for _ in range(3)]
    first = client.v1.accounts.list(params={"limit": 2})
    assert [a.id for a in first.data] == created[::-1][:2]
    assert first.has_more is True and first.url == "/v1/accounts"
    rest = client.v1.accounts.list(params={"limit": 2, "starting_after": first.data[-1].id})
    assert [a.id for a in rest.data] == [created[0]] and rest.has_more is False


def test_admin_readiness_changes_are_visible(client, sandbox, account):
    view = sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"transfers": "pending"})
    assert view["capabilities"]["transfers"] == "pending"
    acct = client.v1.accounts.retrieve(account.id)
    assert acct.capabilities.transfers == "pending"
    assert acct.payouts_enabled is False
    assert acct.requirements.disabled_reason == "requirements.pending_verification"

    sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"transfers": "inactive"})
    acct = client.v1.accounts.retrieve(account.id)
    assert acct.capabilities.transfers == "inactive"
    assert "external_account" in acct.requirements.currently_due

    sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"transfers": "active", "payouts_enabled": False})
    acct = client.v1.accounts.retrieve(account.id)
    assert acct.capabilities.transfers == "active" and acct.payouts_enabled is False

    sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"invalid": True, "payouts_enabled": True})
    acct = client.v1.accounts.retrieve(account.id)
    assert acct.requirements.disabled_reason == "rejected.other"
    assert acct.payouts_enabled is False and acct.charges_enabled is False

    with pytest.raises(RuntimeError, match="404"):
        sandbox.admin("POST", "/_sandbox/accounts/acct_nope", {"transfers": "active"})
    with pytest.raises(RuntimeError, match="400"):
        sandbox.admin("POST", f"/_sandbox/accounts/{account.id}", {"transfers": "enabled"})


def test_authentication_is_required(sandbox):
    status, headers, body = raw_request(sandbox.url + "/v1/balance")
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert headers["Request-Id"].startswith("req_")

    with pytest.raises(stripe.AuthenticationError) as info:
        make_client(sandbox.url, api_key="sk_live_123456789abc").v1.balance.retrieve()
    assert info.value.http_status == 401

    status, _, body = raw_request(sandbox.url + "/v1/balance", headers={"Authorization": "Bearer sk_test_any"})
    assert status == 200 and body["object"] == "balance"


def test_unknown_url_and_unknown_parameter(client, sandbox):
    status, _, body = raw_request(sandbox.url + "/v1/invoices", headers={"Authorization": "Bearer sk_test_x"})
    assert status == 404 and "Unrecognized request URL" in body["error"]["message"]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.accounts.create(params={"type": "express", "colour": "blue"})
    assert info.value.code == "parameter_unknown" and info.value.param == "colour"
