"""The ``/v1`` endpoints: connected accounts, transfers, reversals and the platform balance.

Each write endpoint is split in two, because Stripe's idempotency layer treats the halves
differently:

* ``validate(params, args)`` checks the parameters before anything executes. Its errors
  (missing or malformed parameters) are *not* stored under the Idempotency-Key, so a corrected
  retry with the same key is allowed.
* ``execute(store, values, args, now)`` runs inside the SQLite transaction. Its errors (unknown
  destination, missing capability, insufficient balance, ...) are business outcomes: they are
  stored and replayed like successes, as Stripe does once an endpoint has begun executing.

Read endpoints have a single ``read(store, params, args)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from . import accounts
from .store import Store
from .wire import (ApiError, invalid, list_object, missing, new_id, parse_int, parse_list_params,
                   parse_metadata, parse_str, reject_unknown)

# A sanity cap: Stripe refuses absurd amounts, and SQLite integers are 64-bit.
MAX_AMOUNT = 999_999_999_999


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: re.Pattern[str]
    read: Callable[..., Any] | None = None
    validate: Callable[..., dict[str, Any]] | None = None
    execute: Callable[..., Any] | None = None

    @property
    def writes(self) -> bool:
        return self.execute is not None


def _currency(params: dict[str, Any]) -> str:
    raw = parse_str(params, "currency", required=True)
    assert raw is not None
    if not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise invalid(f"Invalid currency: {raw}. Currencies are three-letter ISO codes, "
                      "e.g. usd.", "invalid_currency", "currency")
    return raw.lower()  # Stripe accepts any case and answers in lowercase


# -- accounts ----------------------------------------------------------------------------------

def _validate_account(params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    return accounts.validate_create(params)


def _create_account(store: Store, values: dict[str, Any], args: dict[str, str],
                    now: int) -> dict[str, Any]:
    obj = accounts.build(values, now)
    store.insert_account(obj)
    return accounts.view(obj, invalid=False)


def _get_account(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    found = store.account(args["id"])
    if found is None:
        raise accounts.no_access(args["id"], args.get("api_key", ""))
    return accounts.view(*found)


def _get_platform_account(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/account``: the platform account behind the API key (one stable id per state)."""
    reject_unknown(params, {"expand"})
    acct_id, created = store.platform_account()
    return {
        "id": acct_id, "object": "account", "type": "standard", "country": "US",
        "email": "platform@sandbox.invalid", "business_type": "company", "default_currency": "usd",
        "created": created, "livemode": False, "metadata": {},
        "business_profile": {"name": "Stripe sandbox platform", "url": None, "mcc": None},
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True, "payouts_enabled": True, "details_submitted": True,
        "requirements": {"currently_due": [], "eventually_due": [], "past_due": [],
                         "pending_verification": [], "errors": [], "current_deadline": None,
                         "disabled_reason": None},
        "settings": {"payouts": {"schedule": {"interval": "daily", "delay_days": 2}}},
    }


def _list_accounts(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ())
    page = store.page("accounts", {}, limit, after)
    if page is None:
        raise missing("account", after or "", "starting_after", 400)
    data = []
    for obj in page[0]:
        found = store.account(obj["id"])
        assert found is not None
        data.append(accounts.view(*found))
    return list_object(data, page[1], "/v1/accounts")


# -- transfers ---------------------------------------------------------------------------------

def _transfer_view(store: Store, obj: dict[str, Any]) -> dict[str, Any]:
    """Attach the embedded ``reversals`` sub-list, read fresh so it is never stale."""
    page = store.page("reversals", {"transfer": obj["id"]}, 10_000, None)
    assert page is not None
    data = page[0]
    reversals = list_object(data[:10], len(data) > 10, f"/v1/transfers/{obj['id']}/reversals")
    reversals["total_count"] = len(data)
    return {**obj, "reversals": reversals}


def _validate_transfer(params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"amount", "currency", "destination", "transfer_group", "metadata",
                            "description", "expand"})
    return {
        "amount": parse_int(params, "amount", required=True, minimum=1, maximum=MAX_AMOUNT,
                            too_small="amount_too_small", too_large="amount_too_large"),
        "currency": _currency(params),
        "destination": parse_str(params, "destination", required=True),
        "transfer_group": parse_str(params, "transfer_group", max_len=500) or None,
        "description": parse_str(params, "description") or None,
        "metadata": parse_metadata(params),
    }


def _create_transfer(store: Store, v: dict[str, Any], args: dict[str, str],
                     now: int) -> dict[str, Any]:
    found = store.account(v["destination"])
    if found is None:
        raise missing("destination", v["destination"], "destination", 400)
    acct, is_invalid = found
    if is_invalid:
        raise invalid(f"The destination account {acct['id']} is invalid (it was rejected or "
                      "closed) and cannot receive transfers.", "account_invalid", "destination")
    if acct["capabilities"].get("transfers") != "active":
        raise invalid("Your destination account needs to have at least one of the following "
                      "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                      "insufficient_capabilities_for_transfer", "destination")
    if store.available(v["currency"]) < v["amount"]:
        raise invalid("You have insufficient available funds in your Stripe account. Try adding "
                      "funds directly to your available balance by creating Charges using the "
                      "4000000000000077 test card. See: https://stripe.com/docs/testing"
                      "#available-balance", "balance_insufficient")
    # Funds leave the platform balance in the same transaction that records the transfer.
    store.adjust_balance(v["currency"], -v["amount"])
    obj = {
        "id": new_id("tr"), "object": "transfer", "amount": v["amount"], "amount_reversed": 0,
        "balance_transaction": new_id("txn"), "created": now, "currency": v["currency"],
        "description": v["description"], "destination": v["destination"],
        "destination_payment": new_id("py"), "livemode": False, "metadata": v["metadata"],
        "reversed": False, "source_transaction": None, "source_type": "card",
        "transfer_group": v["transfer_group"],
    }
    store.insert_transfer(obj)
    return _transfer_view(store, obj)


def _get_transfer(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    obj = store.transfer(args["id"])
    if obj is None:
        raise missing("transfer", args["id"], "id")
    return _transfer_view(store, obj)


_CREATED_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _created_filter(params: dict[str, Any]) -> list[tuple[str, int]]:
    """Stripe's ``created`` list filter: an exact unix time, or a hash of gt/gte/lt/lte."""
    raw = params.get("created")
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [("=", parse_int(params, "created", minimum=0))]
    unknown = set(raw) - set(_CREATED_OPERATORS)
    if unknown:
        raise invalid(f"Received unknown parameter: created[{sorted(unknown)[0]}]", "parameter_unknown",
                      f"created[{sorted(unknown)[0]}]")
    return [(_CREATED_OPERATORS[k], parse_int(raw, k, minimum=0)) for k in sorted(raw)]


def _list_transfers(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ("destination", "transfer_group", "created"))
    filters = {"destination": parse_str(params, "destination"),
               "transfer_group": parse_str(params, "transfer_group")}
    page = store.page("transfers", filters, limit, after, _created_filter(params))
    if page is None:
        raise missing("transfer", after or "", "starting_after", 400)
    return list_object([_transfer_view(store, t) for t in page[0]], page[1], "/v1/transfers")


# -- reversals ---------------------------------------------------------------------------------

def _validate_reversal(params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"amount", "description", "metadata", "refund_application_fee",
                            "expand"})
    return {"amount": parse_int(params, "amount", minimum=1, maximum=MAX_AMOUNT,
                                too_small="amount_too_small", too_large="amount_too_large"),
            "description": parse_str(params, "description") or None,
            "metadata": parse_metadata(params)}


def _create_reversal(store: Store, v: dict[str, Any], args: dict[str, str],
                     now: int) -> dict[str, Any]:
    transfer = store.transfer(args["id"])
    if transfer is None:
        raise missing("transfer", args["id"], "id")
    left = transfer["amount"] - transfer["amount_reversed"]
    if left <= 0:
        raise invalid(f"Transfer {transfer['id']} has already been fully reversed.", None,
                      "amount")
    amount = left if v["amount"] is None else v["amount"]
    if amount > left:
        raise invalid(f"You cannot reverse more than {left} {transfer['currency']} of transfer "
                      f"{transfer['id']} (requested {amount}).", None, "amount")
    # The money comes back to the platform's available balance.
    store.adjust_balance(transfer["currency"], amount)
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    store.update_transfer(transfer)
    obj = {
        "id": new_id("trr"), "object": "transfer_reversal", "amount": amount,
        "balance_transaction": new_id("txn"), "created": now, "currency": transfer["currency"],
        "description": v["description"], "destination_payment_refund": new_id("pyr"),
        "metadata": v["metadata"], "source_refund": None, "transfer": transfer["id"],
    }
    store.insert_reversal(obj)
    return obj


def _list_reversals(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ())
    if store.transfer(args["id"]) is None:
        raise missing("transfer", args["id"], "id")
    page = store.page("reversals", {"transfer": args["id"]}, limit, after)
    if page is None:
        raise missing("transfer_reversal", after or "", "starting_after", 400)
    return list_object(page[0], page[1], f"/v1/transfers/{args['id']}/reversals")


# -- balance -----------------------------------------------------------------------------------

def balance_view(store: Store) -> dict[str, Any]:
    balances = store.balances().items()
    available = [{"amount": amount, "currency": currency, "source_types": {"card": amount}}
                 for currency, amount in balances]
    # A Connect platform's balance also lists what is reserved for connected accounts (nothing here).
    reserved = [{"amount": 0, "currency": currency} for currency, _ in balances]
    return {"object": "balance", "available": available, "connect_reserved": reserved, "pending": [],
            "livemode": False}


def _get_balance(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    return balance_view(store)


_ID = r"(?P<id>[A-Za-z0-9_]+)"
ROUTES = [
    Endpoint("POST", re.compile(r"/v1/accounts"), validate=_validate_account,
             execute=_create_account),
    Endpoint("GET", re.compile(r"/v1/account"), read=_get_platform_account),
    Endpoint("GET", re.compile(r"/v1/accounts"), read=_list_accounts),
    Endpoint("GET", re.compile(rf"/v1/accounts/{_ID}"), read=_get_account),
    Endpoint("POST", re.compile(r"/v1/transfers"), validate=_validate_transfer,
             execute=_create_transfer),
    Endpoint("GET", re.compile(r"/v1/transfers"), read=_list_transfers),
    Endpoint("GET", re.compile(rf"/v1/transfers/{_ID}"), read=_get_transfer),
    Endpoint("POST", re.compile(rf"/v1/transfers/{_ID}/reversals"), validate=_validate_reversal,
             execute=_create_reversal),
    Endpoint("GET", re.compile(rf"/v1/transfers/{_ID}/reversals"), read=_list_reversals),
    Endpoint("GET", re.compile(r"/v1/balance"), read=_get_balance),
]


def route(method: str, path: str) -> tuple[Endpoint, dict[str, str]]:
    for endpoint in ROUTES:
        match = endpoint.pattern.fullmatch(path)
        if match and endpoint.method == method:
            return endpoint, match.groupdict()
    raise ApiError(404, "invalid_request_error",
                   f"Unrecognized request URL ({method}: {path}). The sandbox implements "
                   "the platform account, connected accounts, transfers, transfer reversals and balance.")
