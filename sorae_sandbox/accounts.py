"""Connected accounts and their readiness to receive transfers.

A real connected account goes through onboarding (identity, bank account, terms of service)
before Stripe turns its ``transfers`` capability ``active``. The sandbox simulates onboarding as
instant: every capability requested at creation is ``active`` at once. Tests then degrade an
account through the admin path (``POST /_sandbox/accounts/{id}``) to exercise the engine's
readiness checks: capability ``pending``/``inactive``, payouts disabled, or the account invalid
(rejected/closed, which makes transfers fail with ``account_invalid``).

The stored JSON is the account's base state; ``view()`` derives the fields Stripe derives
(``charges_enabled``, ``requirements``, ``details_submitted``) so they never contradict each other.
"""

from __future__ import annotations

from typing import Any

from .wire import ApiError, invalid, mask_key, new_id, parse_bool, parse_metadata, parse_str, reject_unknown

CAPABILITY_STATES = ("active", "inactive", "pending")
_DEFAULT_CURRENCY = {
    "US": "usd",
    "GB": "gbp",
    "JP": "jpy",
    "CA": "cad",
    "AU": "aud",
    "CH": "chf",
    "SE": "sek",
    "DK": "dkk",
    "NO": "nok",
    "SG": "sgd",
}
_ALLOWED_PARAMS = {
    "type",
    "country",
    "email",
    "capabilities",
    "metadata",
    "business_type",
    "business_profile",
    "default_currency",
    "controller",
    "expand",
}


def no_access(account_id: str, api_key: str) -> ApiError:
    """What Stripe answers for ``GET /v1/accounts/{id}`` when the account does not exist or is not
    connected to the platform of the key: 403 ``permission_error``, code ``account_invalid``, the key
    masked (the SDK raises it as ``stripe.PermissionError``). Stripe does not say which of the two it is."""
    return ApiError(
        403,
        "permission_error",
        f"The provided key '{mask_key(api_key)}' does not have access to account '{account_id}' "
        "(or that account does not exist). Application access may have been revoked.",
        "account_invalid",
    )


def validate_create(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters of ``POST /v1/accounts`` (validation only; nothing executes here)."""
    reject_unknown(params, _ALLOWED_PARAMS)
    acct_type = parse_str(params, "type") or "express"
    if acct_type not in ("standard", "express", "custom"):
        raise invalid("Invalid type: must be one of custom, express, or standard", "parameter_invalid_string", "type")
    country = (parse_str(params, "country") or "US").upper()
    if len(country) != 2 or not country.isalpha():
        raise invalid(f"Invalid country: {country}", "parameter_invalid_string", "country")
    requested: list[str] = []
    caps = params.get("capabilities") or {}
    if not isinstance(caps, dict):
        raise invalid("Invalid object: capabilities must be a hash.", "parameter_invalid_object", "capabilities")
    for name, spec in caps.items():
        if not isinstance(spec, dict) or "requested" not in spec:
            raise invalid(
                f"Missing required param: capabilities[{name}][requested].",
                "parameter_missing",
                f"capabilities[{name}][requested]",
            )
        if parse_bool(spec["requested"], f"capabilities[{name}][requested]"):
            requested.append(name)
    business_type = parse_str(params, "business_type")
    default_currency = parse_str(params, "default_currency")
    return {
        "type": acct_type,
        "country": country,
        "email": parse_str(params, "email"),
        "capabilities": requested,
        "metadata": parse_metadata(params),
        "business_type": business_type,
        "default_currency": (default_currency or _DEFAULT_CURRENCY.get(country, "eur")).lower(),
    }


def build(values: dict[str, Any], now: int) -> dict[str, Any]:
    """A new account, onboarded at once: every requested capability is active."""
    active = bool(values["capabilities"])
    return {
        "id": new_id("acct", 16),
        "object": "account",
        "type": values["type"],
        "country": values["country"],
        "email": values["email"],
        "business_type": values["business_type"],
        "default_currency": values["default_currency"],
        "created": now,
        "livemode": False,
        "metadata": values["metadata"],
        "capabilities": {name: "active" for name in values["capabilities"]},
        "payouts_enabled": active,
        "settings": {"payouts": {"schedule": {"interval": "daily", "delay_days": 2}}},
    }


def view(obj: dict[str, Any], invalid: bool) -> dict[str, Any]:
    """The account as Stripe returns it, with readiness fields derived from the base state."""
    out = dict(obj)
    transfers = obj["capabilities"].get("transfers")
    requirements: dict[str, Any] = {
        "currently_due": [],
        "eventually_due": [],
        "past_due": [],
        "pending_verification": [],
        "errors": [],
        "current_deadline": None,
        "disabled_reason": None,
    }
    if invalid:
        requirements["disabled_reason"] = "rejected.other"
    elif transfers == "pending":
        requirements["pending_verification"] = ["individual.verification.document"]
        requirements["disabled_reason"] = "requirements.pending_verification"
    elif transfers == "inactive" or (transfers is None and not obj["capabilities"]):
        due = ["external_account", "tos_acceptance.date", "tos_acceptance.ip"]
        requirements.update(
            currently_due=due, eventually_due=due, past_due=due, disabled_reason="requirements.past_due"
        )
    active_any = any(state == "active" for state in obj["capabilities"].values())
    out["requirements"] = requirements
    # Fields of stripe-python 16's `Account` the engine does not read, present so SDK users see
    # Stripe's shape: nothing is due in the future, no bank account is listed (payouts are simulated).
    out["future_requirements"] = {
        key: ([] if isinstance(value, list) else None) for key, value in requirements.items()
    } | {"alternatives": []}
    out["requirements"]["alternatives"] = []
    out["controller"] = (
        {"type": "application", "is_controller": True} if obj["type"] != "standard" else {"type": "account"}
    )
    out["business_profile"] = {
        "mcc": None,
        "name": None,
        "url": None,
        "support_email": None,
        "product_description": None,
    }
    out["tos_acceptance"] = {"date": obj["created"] if active_any else None, "ip": None, "user_agent": None}
    out["external_accounts"] = {
        "object": "list",
        "data": [],
        "has_more": False,
        "total_count": 0,
        "url": f"/v1/accounts/{obj['id']}/external_accounts",
    }
    out["details_submitted"] = active_any
    out["charges_enabled"] = active_any and not invalid
    out["payouts_enabled"] = bool(obj["payouts_enabled"]) and not invalid
    return out


def admin_update(obj: dict[str, Any], invalid_now: bool, changes: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Apply a ``/_sandbox/accounts/{id}`` change; returns the new base state and invalid flag.

    Changing ``transfers`` alone also moves ``payouts_enabled`` with it (an account whose
    requirements are past due has payouts disabled too); pass ``payouts_enabled`` to override.
    """
    unknown = set(changes) - {"transfers", "payouts_enabled", "invalid"}
    if unknown:
        raise invalid(f"Unknown sandbox account field(s): {sorted(unknown)}")
    obj = {**obj, "capabilities": dict(obj["capabilities"])}
    if "transfers" in changes:
        state = changes["transfers"]
        if state not in CAPABILITY_STATES:
            raise invalid(f"transfers must be one of {CAPABILITY_STATES}", param="transfers")
        obj["capabilities"]["transfers"] = state
        obj["payouts_enabled"] = state == "active"
    if "payouts_enabled" in changes:
        if not isinstance(changes["payouts_enabled"], bool):
            raise invalid("payouts_enabled must be a boolean", param="payouts_enabled")
        obj["payouts_enabled"] = changes["payouts_enabled"]
    if "invalid" in changes:
        if not isinstance(changes["invalid"], bool):
            raise invalid("invalid must be a boolean", param="invalid")
        invalid_now = changes["invalid"]
    return obj, invalid_now
