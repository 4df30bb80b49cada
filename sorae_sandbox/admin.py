"""The sandbox-only admin path, ``/_sandbox/...``: what tests and demos use to set the scene.

Never under ``/v1`` (the SDK cannot reach it by accident) and no authentication. Bodies and
answers are JSON. Where a platform account matters, ``platform`` (``acct_...``; query parameter of
a GET, body field of a POST) names it; without it the default platform is meant. Endpoints:

* ``GET /_sandbox/health``                    -> ``{"ok": true}`` (readiness probe for scripts)
* ``GET /_sandbox/clock``                     -> ``{"now": unix_seconds, "offset_seconds": n}``
* ``POST /_sandbox/clock/advance {"seconds": N}`` moves the sandbox clock forward (idempotency
  keys expire 24 h after first use on this clock and are pruned as the clock passes that age;
  pending charge funds become available at their ``available_on``).
  ``SandboxServer(clock_offset_seconds=N)`` / ``sorae-payouts sandbox --clock-offset-seconds N``
  start the sandbox with its clock already N seconds ahead of the engine's.
* ``GET /_sandbox/platforms`` -> ``{"platforms": [platform, ...]}``;
  ``GET /_sandbox/platforms/{acct}`` -> one platform;
  ``POST /_sandbox/platforms {"api_key": "sk_test_...", "balances": {"usd": N}}`` creates a platform
  account answering to that key (``balances``: optional starting balances in minor units) and
  returns it with ``"new": true``; a key that already has a platform returns that platform with
  ``"new": false`` (its balances seed only currencies it does not hold yet). A platform is
  ``{"object": "sandbox.platform", "id": "acct_...", "default": bool, "created": unix_seconds,
  "api_keys": [masked keys], "open": bool, "balance": {"available": {cur: n}, "pending": {cur: n}}}``
  (``open``: the default platform takes any test key no other platform owns); keys are never echoed
  in full.
* ``GET /_sandbox/balance[?platform=acct_...]`` (the ``/v1/balance`` object of that platform);
  ``POST /_sandbox/balance {"currency": "usd", "amount": N[, "platform": "acct_..."]}`` adds N
  (minor units, may be negative) to the platform's available balance.
* ``POST /_sandbox/accounts/{id} {"transfers": "active"|"inactive"|"pending",
  "payouts_enabled": bool, "invalid": bool}`` changes a connected account's readiness (of any
  platform: account ids are unique).
* ``GET|POST|DELETE /_sandbox/faults``: list, add one rule (see ``faults.py``), clear all.
* ``GET /_sandbox/stats``: request counters, object counts, and per platform (``platforms``) its
  requests, 429s and the most requests it sent in any sliding one-second window.
* ``POST /_sandbox/reset``: forget all platforms, objects, keys, faults and clock offset; a new
  default platform with the starting balances; start-up platforms are created again.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from . import accounts
from .balances import balance_view
from .faults import FaultRule
from .pipeline import SandboxApp
from .wire import ApiError, Response, invalid, missing


def handle_admin(app: SandboxApp, method: str, path: str, raw_body: str, query: str = "") -> Response:
    try:
        body = _json(raw_body) if method == "POST" else {}
        if method == "GET":
            body = {k: v[-1] for k, v in parse_qs(query).items()}
        return Response(200, _dispatch(app, method, path.rstrip("/"), body))
    except ApiError as err:
        return err.response()


def _json(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise invalid(f"Admin bodies are JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("Admin bodies are JSON objects.")
    return body


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"{name} must be an integer", param=name)
    return value


def _platform(app: SandboxApp, body: dict[str, Any]) -> str:
    acct = body.get("platform")
    if acct is None:
        return app.default_platform
    if not isinstance(acct, str) or app.store.platform(acct) is None:
        raise missing("platform account", str(acct), "platform")
    return acct


def _currency_amounts(raw: Any) -> dict[str, int]:
    if raw is None:
        return {}
    ok = isinstance(raw, dict) and all(
        isinstance(c, str)
        and re.fullmatch(r"[A-Za-z]{3}", c)
        and isinstance(a, int)
        and not isinstance(a, bool)
        and a >= 0
        for c, a in raw.items()
    )
    if not ok:
        raise invalid("balances must map three-letter currencies to amounts >= 0 in minor units", param="balances")
    return {c.lower(): a for c, a in raw.items()}


def platform_view(app: SandboxApp, acct: str) -> dict[str, Any]:
    found = app.store.platform(acct)
    if found is None:
        raise missing("platform account", acct, "platform")
    available, pending = app.store.balance_summary(acct)
    # open: any test key no other platform owns acts for it (the default platform without api_keys).
    return {
        "object": "sandbox.platform",
        **found,
        "open": found["default"] and app.default_keys is None,
        "balance": {"available": available, "pending": pending},
    }


def _platforms(app: SandboxApp, method: str, path: str, body: dict[str, Any]) -> Any:
    store = app.store
    if method == "GET" and path == "/_sandbox/platforms":
        with store.reading():
            return {"platforms": [platform_view(app, acct) for acct in store.platform_ids()]}
    if method == "POST" and path == "/_sandbox/platforms":
        unknown = set(body) - {"api_key", "balances"}
        if unknown:
            raise invalid(f"Unknown sandbox platform field(s): {sorted(unknown)}")
        if "api_key" not in body:
            raise invalid("Missing required field: api_key.", "parameter_missing", "api_key")
        balances = _currency_amounts(body.get("balances"))
        with store.transaction():
            acct, new = app.add_platform(body["api_key"], balances)
            return {**platform_view(app, acct), "new": new}
    match = re.fullmatch(r"/_sandbox/platforms/(acct_[A-Za-z0-9]+)", path)
    if match and method == "GET":
        with store.reading():
            return platform_view(app, match.group(1))
    raise ApiError(404, "invalid_request_error", f"Unknown sandbox admin path ({method}: {path}).")


def _dispatch(app: SandboxApp, method: str, path: str, body: dict[str, Any]) -> Any:
    store = app.store
    if (method, path) == ("GET", "/_sandbox/health"):
        return {"ok": True}
    if (method, path) == ("GET", "/_sandbox/clock"):
        with store.reading():
            return {"now": store.now(), "offset_seconds": store.clock_offset()}
    if (method, path) == ("POST", "/_sandbox/clock/advance"):
        seconds = _int(body, "seconds")
        if seconds < 0:
            raise invalid("The sandbox clock only moves forward.", param="seconds")
        with store.transaction():
            now = store.advance_clock(seconds)
            return {"now": now, "offset_seconds": store.clock_offset()}
    if path.startswith("/_sandbox/platforms"):
        return _platforms(app, method, path, body)
    if (method, path) == ("GET", "/_sandbox/balance"):
        with store.reading():
            return balance_view(store, _platform(app, body))
    if (method, path) == ("POST", "/_sandbox/balance"):
        currency = body.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise invalid("currency must be a three-letter code", param="currency")
        amount = _int(body, "amount")
        with store.transaction():
            platform = _platform(app, body)
            store.settle_charges(platform)
            if store.available(platform, currency.lower()) + amount < 0:
                raise invalid("The available balance cannot go below zero.", param="amount")
            store.adjust_balance(platform, currency.lower(), amount)
            return balance_view(store, platform)
    match = re.fullmatch(r"/_sandbox/accounts/([A-Za-z0-9_]+)", path)
    if match and method == "POST":
        with store.transaction():
            found = store.account(None, match.group(1))
            if found is None:
                raise missing("account", match.group(1), "account")
            obj, is_invalid = accounts.admin_update(found[0], found[1], body)
            store.update_account(obj, is_invalid)
            return accounts.view(obj, is_invalid)
    if path == "/_sandbox/faults":
        if method == "POST":
            app.faults.add(FaultRule.from_json(body))
        elif method == "DELETE":
            app.faults.clear()
        return {"faults": app.faults.rules(), "triggered": app.faults.triggered_counts()}
    if (method, path) == ("GET", "/_sandbox/stats"):
        with store.reading():
            counts = {
                table: store.count(table) for table in ("accounts", "transfers", "reversals", "charges", "topups")
            }
            counts.update(
                idempotency_keys=store.idempotency_count(),
                now=store.now(),
                balances=store.balance_summary(app.default_platform)[0],
            )
        return {**app.stats.snapshot(), **counts, "faults_triggered": app.faults.triggered_counts()}
    if (method, path) == ("POST", "/_sandbox/reset"):
        with store.transaction():
            store.reset()
            app.apply_startup()
        app.faults.clear()
        app.faults.reset_counts()
        app.stats.reset()
        return {"reset": True}
    raise ApiError(404, "invalid_request_error", f"Unknown sandbox admin path ({method}: {path}).")
