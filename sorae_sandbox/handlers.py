"""The ``/v1`` endpoints: the platform account, connected accounts, transfers, reversals and the balance
(charges and top-ups are in ``charges.py``).

Every endpoint acts for one platform account: the pipeline authenticates the API key and passes its
platform's id as ``args["platform"]``; objects of other platforms are answered as Stripe answers
objects that do not exist.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import accounts, charges
from .balances import balance_view
from .platforms import account_view
from .store import Store
from .wire import (
    ApiError,
    invalid,
    list_object,
    missing,
    new_id,
    parse_int,
    parse_list_params,
    parse_metadata,
    parse_str,
    reject_unknown,
)

# A sanity cap: Stripe refuses absurd amounts, and SQLite integers are 64-bit.
MAX_AMOUNT = charges.MAX_AMOUNT


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


# -- accounts ----------------------------------------------------------------------------------


def _validate_account(params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    return accounts.validate_create(params)


def _create_account(store: Store, values: dict[str, Any], args: dict[str, str], now: int) -> dict[str, Any]:
    obj = accounts.build(values, now)
    store.insert_account(args["platform"], obj)
    return accounts.view(obj, invalid=False)


def _get_account(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    found = store.account(args["platform"], args["id"])
    if found is None:  # not connected to this platform, or no such account: Stripe does not say which
        raise accounts.no_access(args["id"], args.get("api_key", ""))
    return accounts.view(*found)


def _get_platform_account(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/account``: the platform account behind the API key (one stable id per platform)."""
    reject_unknown(params, {"expand"})
    platform = store.platform(args["platform"])
    assert platform is not None
    return account_view(platform["id"], platform["created"], platform["default"])


def _list_accounts(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ())
    page = store.page("accounts", {"platform": args["platform"]}, limit, after)
    if page is None:
        raise missing("account", after or "", "starting_after", 400)
    data = []
    for obj in page[0]:
        found = store.account(args["platform"], obj["id"])
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
    reject_unknown(
        params,
        {
            "amount",
            "currency",
            "destination",
            "transfer_group",
            "metadata",
            "description",
            "source_transaction",
            "expand",
        },
    )
    return {
        "amount": parse_int(
            params,
            "amount",
            required=True,
            minimum=1,
            maximum=MAX_AMOUNT,
            too_small="amount_too_small",
            too_large="amount_too_large",
        ),
        "currency": charges.parse_currency(params),
        "source_transaction": parse_str(params, "source_transaction") or None,
        "destination": parse_str(params, "destination", required=True),
        "transfer_group": parse_str(params, "transfer_group", max_len=500) or None,
        "description": parse_str(params, "description") or None,
        "metadata": parse_metadata(params),
    }


def _create_transfer(store: Store, v: dict[str, Any], args: dict[str, str], now: int) -> dict[str, Any]:
    platform = args["platform"]
    found = store.account(platform, v["destination"])
    if found is None:  # also an account connected to another platform
        raise missing("destination", v["destination"], "destination", 400)
    acct, is_invalid = found
    if is_invalid:
        raise invalid(
            f"The destination account {acct['id']} is invalid (it was rejected or "
            "closed) and cannot receive transfers.",
            "account_invalid",
            "destination",
        )
    if acct["capabilities"].get("transfers") != "active":
        raise invalid(
            "Your destination account needs to have at least one of the following "
            "capabilities enabled: transfers, crypto_transfers, legacy_payments",
            "insufficient_capabilities_for_transfer",
            "destination",
        )
    # Funds leave the platform balance (or the source charge) in the transaction that records the transfer.
    charges.fund_transfer(store, platform, v)
    obj = {
        "id": new_id("tr"),
        "object": "transfer",
        "amount": v["amount"],
        "amount_reversed": 0,
        "balance_transaction": new_id("txn"),
        "created": now,
        "currency": v["currency"],
        "description": v["description"],
        "destination": v["destination"],
        "destination_payment": new_id("py"),
        "livemode": False,
        "metadata": v["metadata"],
        "reversed": False,
        "source_transaction": v["source_transaction"],
        "source_type": "card",
        "transfer_group": v["transfer_group"],
    }
    store.insert_transfer(platform, obj)
    return _transfer_view(store, obj)


def _get_transfer(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    obj = store.transfer(args["platform"], args["id"])
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
        raise invalid(
            f"Received unknown parameter: created[{sorted(unknown)[0]}]",
            "parameter_unknown",
            f"created[{sorted(unknown)[0]}]",
        )
    return [(_CREATED_OPERATORS[k], parse_int(raw, k, minimum=0)) for k in sorted(raw)]


def _list_transfers(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ("destination", "transfer_group", "created"))
    # No source_transaction filter: Stripe has none (parse_list_params answers parameter_unknown).
    filters = {
        "platform": args["platform"],
        "destination": parse_str(params, "destination"),
        "transfer_group": parse_str(params, "transfer_group"),
    }
    page = store.page("transfers", filters, limit, after, _created_filter(params))
    if page is None:
        raise missing("transfer", after or "", "starting_after", 400)
    return list_object([_transfer_view(store, t) for t in page[0]], page[1], "/v1/transfers")


# -- reversals ---------------------------------------------------------------------------------


def _validate_reversal(params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"amount", "description", "metadata", "refund_application_fee", "expand"})
    return {
        "amount": parse_int(
            params, "amount", minimum=1, maximum=MAX_AMOUNT, too_small="amount_too_small", too_large="amount_too_large"
        ),
        "description": parse_str(params, "description") or None,
        "metadata": parse_metadata(params),
    }


def _create_reversal(store: Store, v: dict[str, Any], args: dict[str, str], now: int) -> dict[str, Any]:
    transfer = store.transfer(args["platform"], args["id"])
    if transfer is None:
        raise missing("transfer", args["id"], "id")
    left = transfer["amount"] - transfer["amount_reversed"]
    if left <= 0:
        raise invalid(f"Transfer {transfer['id']} has already been fully reversed.", None, "amount")
    amount = left if v["amount"] is None else v["amount"]
    if amount > left:
        raise invalid(
            f"You cannot reverse more than {left} {transfer['currency']} of transfer "
            f"{transfer['id']} (requested {amount}).",
            None,
            "amount",
        )
    # The money comes back to the platform's available balance (not to a source charge).
    store.adjust_balance(args["platform"], transfer["currency"], amount)
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    store.update_transfer(transfer)
    obj = {
        "id": new_id("trr"),
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": new_id("txn"),
        "created": now,
        "currency": transfer["currency"],
        "description": v["description"],
        "destination_payment_refund": new_id("pyr"),
        "metadata": v["metadata"],
        "source_refund": None,
        "transfer": transfer["id"],
    }
    store.insert_reversal(obj)
    return obj


def _list_reversals(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ())
    if store.transfer(args["platform"], args["id"]) is None:
        raise missing("transfer", args["id"], "id")
    page = store.page("reversals", {"transfer": args["id"]}, limit, after)
    if page is None:
        raise missing("transfer_reversal", after or "", "starting_after", 400)
    return list_object(page[0], page[1], f"/v1/transfers/{args['id']}/reversals")


# -- balance -----------------------------------------------------------------------------------


def _get_balance(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    return balance_view(store, args["platform"])


_ID = r"(?P<id>[A-Za-z0-9_]+)"
ROUTES = [
    Endpoint("POST", re.compile(r"/v1/accounts"), validate=_validate_account, execute=_create_account),
    Endpoint("GET", re.compile(r"/v1/account"), read=_get_platform_account),
    Endpoint("GET", re.compile(r"/v1/accounts"), read=_list_accounts),
    Endpoint("GET", re.compile(rf"/v1/accounts/{_ID}"), read=_get_account),
    Endpoint("POST", re.compile(r"/v1/transfers"), validate=_validate_transfer, execute=_create_transfer),
    Endpoint("GET", re.compile(r"/v1/transfers"), read=_list_transfers),
    Endpoint("GET", re.compile(rf"/v1/transfers/{_ID}"), read=_get_transfer),
    Endpoint(
        "POST", re.compile(rf"/v1/transfers/{_ID}/reversals"), validate=_validate_reversal, execute=_create_reversal
    ),
    Endpoint("GET", re.compile(rf"/v1/transfers/{_ID}/reversals"), read=_list_reversals),
    Endpoint("GET", re.compile(r"/v1/balance"), read=_get_balance),
    Endpoint("POST", re.compile(r"/v1/charges"), validate=charges.validate_charge, execute=charges.create_charge),
    Endpoint("GET", re.compile(r"/v1/charges"), read=charges.list_charges),
    Endpoint("GET", re.compile(rf"/v1/charges/{_ID}"), read=charges.get_charge),
    Endpoint("POST", re.compile(r"/v1/topups"), validate=charges.validate_topup, execute=charges.create_topup),
    Endpoint("GET", re.compile(r"/v1/topups"), read=charges.list_topups),
    Endpoint("GET", re.compile(rf"/v1/topups/{_ID}"), read=charges.get_topup),
]


def route(method: str, path: str) -> tuple[Endpoint, dict[str, str]]:
    for endpoint in ROUTES:
        match = endpoint.pattern.fullmatch(path)
        if match and endpoint.method == method:
            return endpoint, match.groupdict()
    raise ApiError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({method}: {path}). The sandbox implements "
        "the platform account, connected accounts, transfers, transfer reversals, charges, "
        "top-ups and balance.",
    )
