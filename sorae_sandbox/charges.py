"""Money coming into a platform: charges (``/v1/charges``) and top-ups (``/v1/topups``), and the rules
of a transfer that names a charge as its ``source_transaction``.

Charges are created the legacy way Stripe still serves: ``POST /v1/charges`` with ``amount``,
``currency``, a test ``source`` token (``tok_visa``, ``tok_mastercard``, ``tok_amex``,
``tok_visa_debit``, ``tok_bypassPending``), ``description``, ``metadata``, ``transfer_group``. Every
charge succeeds and is captured at once (``status: succeeded``, ``paid`` and ``captured`` true);
there are no declines, refunds, disputes, customers or PaymentIntents, and no minimum charge amount.
Its funds are pending until ``available_on`` (see ``balances.py``). Top-ups (``POST /v1/topups``:
``amount``, ``currency``, ``description``, ``metadata``, ``statement_descriptor``,
``transfer_group``) succeed at once and their funds are available at once.

``source_transaction`` on ``POST /v1/transfers`` (Stripe's rules; each refusal is an executed request,
stored under the Idempotency-Key like Stripe's business errors):

* the charge must be a charge of the same platform, else 400 ``invalid_request_error``, code
  ``resource_missing``, param ``source_transaction``: "No such charge: 'ch_...'";
* the transfer's currency must be the charge's, else 400 ``invalid_request_error`` without a code,
  param ``source_transaction``: "The currency of source_transaction's balance transaction (usd) must
  be the same as the transfer currency (eur)" (Stripe's wording, as Stripe users quote it);
* the transfers created with that source_transaction may not total more than the charge's amount
  (the gross amounts: a reversal does not give its amount back to the charge), else 400
  ``invalid_request_error``, code ``amount_too_large``, param ``source_transaction``: "Insufficient
  funds in source transaction ch_...: transfers from it already total 600 usd of its 1000 usd; this
  transfer of 500 usd would exceed it." Stripe documents the rule but not its error: this code and
  wording are the sandbox's choice (never ``balance_insufficient``, which means "the platform is short
  for now, retry later"; this refusal is final for the transfer).

Transfers are not listed by ``source_transaction``: Stripe's ``GET /v1/transfers`` has no such
filter (its API answers ``parameter_unknown``, and so does the sandbox); read the ``source_transaction``
field of the transfers listed by ``transfer_group``, ``destination`` or ``created`` instead.
"""

from __future__ import annotations

from typing import Any

from .balances import CHARGE_PENDING_SECONDS
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

MAX_AMOUNT = 999_999_999_999
# Test tokens: brand, last4, funding; tok_bypassPending's funds are available at once.
TOKENS = {
    "tok_visa": ("visa", "4242", "credit"),
    "tok_visa_debit": ("visa", "5556", "debit"),
    "tok_mastercard": ("mastercard", "4444", "credit"),
    "tok_amex": ("amex", "8431", "credit"),
    "tok_bypassPending": ("visa", "0077", "credit"),
}


def parse_currency(params: dict[str, Any]) -> str:
    raw = parse_str(params, "currency", required=True)
    assert raw is not None
    if len(raw) != 3 or not raw.isascii() or not raw.isalpha():
        raise invalid(
            f"Invalid currency: {raw}. Currencies are three-letter ISO codes, e.g. usd.", "invalid_currency", "currency"
        )
    return raw.lower()  # Stripe accepts any case and answers in lowercase


def _amount(params: dict[str, Any]) -> int:
    value = parse_int(
        params,
        "amount",
        required=True,
        minimum=1,
        maximum=MAX_AMOUNT,
        too_small="amount_too_small",
        too_large="amount_too_large",
    )
    assert value is not None
    return value


# -- charges -----------------------------------------------------------------------------------


def validate_charge(params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(
        params,
        {
            "amount",
            "currency",
            "source",
            "description",
            "metadata",
            "capture",
            "transfer_group",
            "statement_descriptor",
            "expand",
        },
    )
    if parse_str(params, "capture") not in (None, "true"):
        raise invalid(
            "The sandbox captures every charge at once: capture must be true.", "parameter_invalid_boolean", "capture"
        )
    values = {
        "amount": _amount(params),
        "currency": parse_currency(params),
        "description": parse_str(params, "description") or None,
        "metadata": parse_metadata(params),
        "transfer_group": parse_str(params, "transfer_group", max_len=500) or None,
        "statement_descriptor": parse_str(params, "statement_descriptor", max_len=22) or None,
    }
    source = parse_str(params, "source")
    if not source:
        raise invalid("Must provide source or customer.", "parameter_missing", "source")
    if source not in TOKENS:
        raise missing("token", source, "source", 400)  # "No such token: 'tok_...'"
    return {**values, "source": source}


def create_charge(store: Store, v: dict[str, Any], args: dict[str, str], now: int) -> dict[str, Any]:
    brand, last4, funding = TOKENS[v["source"]]
    card = {
        "id": new_id("card"),
        "object": "card",
        "brand": brand.title() if brand != "amex" else "American Express",
        "last4": last4,
        "funding": funding,
        "exp_month": 12,
        "exp_year": 2034,
        "country": "US",
        "cvc_check": "pass",
        "fingerprint": new_id("fp", 16)[3:],
        "metadata": {},
    }
    obj = {
        "id": new_id("ch"),
        "object": "charge",
        "amount": v["amount"],
        "amount_captured": v["amount"],
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "authorization_code": "123456",
        "balance_transaction": new_id("txn"),
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": (v["statement_descriptor"] or "SANDBOX").upper(),
        "captured": True,
        "created": now,
        "currency": v["currency"],
        "customer": None,
        "description": v["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": v["metadata"],
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": None,
        "payment_method": card["id"],
        "payment_method_details": {
            "type": "card",
            "card": {
                "brand": brand,
                "last4": last4,
                "funding": funding,
                "exp_month": 12,
                "exp_year": 2034,
                "country": "US",
                "network": brand if brand != "amex" else "amex",
            },
        },
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": card,
        "source_transfer": None,
        "statement_descriptor": v["statement_descriptor"],
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer": None,
        "transfer_data": None,
        "transfer_group": v["transfer_group"],
    }
    pending = 0 if v["source"] == "tok_bypassPending" else CHARGE_PENDING_SECONDS
    store.settle_charges(args["platform"])
    store.insert_charge(args["platform"], obj, now + pending)
    return _charge_view(obj)


def _charge_view(obj: dict[str, Any]) -> dict[str, Any]:
    # Refunds are not modelled: the embedded list is always empty.
    return {
        **obj,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/charges/{obj['id']}/refunds",
        },
    }


def get_charge(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    found = store.charge(args["platform"], args["id"])
    if found is None:
        raise missing("charge", args["id"], "id")
    return _charge_view(found[0])


def list_charges(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ())
    page = store.page("charges", {"platform": args["platform"]}, limit, after)
    if page is None:
        raise missing("charge", after or "", "starting_after", 400)
    return list_object([_charge_view(c) for c in page[0]], page[1], "/v1/charges")


# -- top-ups -----------------------------------------------------------------------------------


def validate_topup(params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(
        params, {"amount", "currency", "description", "metadata", "statement_descriptor", "transfer_group", "expand"}
    )
    return {
        "amount": _amount(params),
        "currency": parse_currency(params),
        "description": parse_str(params, "description") or None,
        "metadata": parse_metadata(params),
        "statement_descriptor": parse_str(params, "statement_descriptor", max_len=15) or None,
        "transfer_group": parse_str(params, "transfer_group", max_len=500) or None,
    }


def create_topup(store: Store, v: dict[str, Any], args: dict[str, str], now: int) -> dict[str, Any]:
    obj = {
        "id": new_id("tu"),
        "object": "topup",
        "amount": v["amount"],
        "balance_transaction": new_id("txn"),
        "created": now,
        "currency": v["currency"],
        "description": v["description"],
        "expected_availability_date": now,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": v["metadata"],
        "source": None,
        "statement_descriptor": v["statement_descriptor"],
        "status": "succeeded",
        "transfer_group": v["transfer_group"],
    }
    store.insert_topup(args["platform"], obj)
    store.adjust_balance(args["platform"], v["currency"], v["amount"])  # available at once
    return obj


def get_topup(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    reject_unknown(params, {"expand"})
    obj = store.topup(args["platform"], args["id"])
    if obj is None:
        raise missing("topup", args["id"], "id")
    return obj


def list_topups(store: Store, params: dict[str, Any], args: dict[str, str]) -> dict[str, Any]:
    limit, after = parse_list_params(params, ())
    page = store.page("topups", {"platform": args["platform"]}, limit, after)
    if page is None:
        raise missing("topup", after or "", "starting_after", 400)
    return list_object(page[0], page[1], "/v1/topups")


# -- paying a transfer -------------------------------------------------------------------------


def fund_transfer(store: Store, platform: str, v: dict[str, Any]) -> None:
    """Debit the funds of a transfer about to be created, or raise the ``ApiError`` Stripe answers."""
    store.settle_charges(platform)
    source = v["source_transaction"]
    if source is None:
        _spend_available(store, platform, v["currency"], v["amount"])
        return
    found = store.charge(platform, source)
    if found is None:
        raise missing("charge", source, "source_transaction", 400)
    charge, funds = found
    if charge["currency"] != v["currency"]:
        raise invalid(
            f"The currency of source_transaction's balance transaction ({charge['currency']}) must be "
            f"the same as the transfer currency ({v['currency']})",
            None,
            "source_transaction",
        )
    drawn = funds["transferred"]
    if drawn + v["amount"] > charge["amount"]:
        cur = charge["currency"]
        raise invalid(
            f"Insufficient funds in source transaction {source}: transfers from it already total "
            f"{drawn} {cur} of its {charge['amount']} {cur}; this transfer of {v['amount']} {cur} "
            "would exceed it.",
            "amount_too_large",
            "source_transaction",
        )
    if funds["settled"]:
        # The charge's funds are in the available balance now, mixed with everything else.
        _spend_available(store, platform, v["currency"], v["amount"])
    store.draw_from_charge(source, v["amount"])


def _spend_available(store: Store, platform: str, currency: str, amount: int) -> None:
    if store.available(platform, currency) < amount:
        raise ApiError(
            400,
            "invalid_request_error",
            "You have insufficient available funds in your Stripe account. Try adding funds "
            "directly to your available balance by creating Charges using the 4000000000000077 "
            "test card. See: https://stripe.com/docs/testing#available-balance",
            "balance_insufficient",
        )
    store.adjust_balance(platform, currency, -amount)
