"""The sandbox-only admin path, ``/_sandbox/...``: what tests and demos use to set the scene.

Never under ``/v1`` (the SDK cannot reach it by accident) and no authentication. Bodies and
answers are JSON. Endpoints:

* ``GET /_sandbox/health``                    -> ``{"ok": true}`` (readiness probe for scripts)
* ``GET /_sandbox/clock``                     -> ``{"now": unix_seconds, "offset_seconds": n}``
* ``POST /_sandbox/clock/advance {"seconds": N}`` moves the sandbox clock forward (idempotency
  keys expire 24 h after first use on this clock and are pruned as the clock passes that age).
  ``SandboxServer(clock_offset_seconds=N)`` / ``sorae-payouts sandbox --clock-offset-seconds N``
  start the sandbox with its clock already N seconds ahead of the engine's.
* ``GET /_sandbox/balance``; ``POST /_sandbox/balance {"currency": "usd", "amount": N}`` adds N
  (minor units) to the platform's available balance.
* ``POST /_sandbox/accounts/{id} {"transfers": "active"|"inactive"|"pending",
  "payouts_enabled": bool, "invalid": bool}`` changes a connected account's readiness.
* ``GET|POST|DELETE /_sandbox/faults``: list, add one rule (see ``faults.py``), clear all.
* ``GET /_sandbox/stats``: request counters and object counts.
* ``POST /_sandbox/reset``: forget all objects, keys, faults and clock offset; re-seed balances.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import accounts
from .faults import FaultRule
from .handlers import balance_view
from .pipeline import SandboxApp
from .wire import ApiError, Response, invalid, missing


def handle_admin(app: SandboxApp, method: str, path: str, raw_body: str) -> Response:
    try:
        body = _json(raw_body) if method == "POST" else {}
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
    if (method, path) == ("GET", "/_sandbox/balance"):
        with store.reading():
            return balance_view(store)
    if (method, path) == ("POST", "/_sandbox/balance"):
        currency = body.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise invalid("currency must be a three-letter code", param="currency")
        amount = _int(body, "amount")
        with store.transaction():
            if store.available(currency.lower()) + amount < 0:
                raise invalid("The available balance cannot go below zero.", param="amount")
            store.adjust_balance(currency.lower(), amount)
            return balance_view(store)
    match = re.fullmatch(r"/_sandbox/accounts/([A-Za-z0-9_]+)", path)
    if match and method == "POST":
        with store.transaction():
            found = store.account(match.group(1))
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
            counts = {"accounts": store.count("accounts"), "transfers": store.count("transfers"),
                      "reversals": store.count("reversals"),
                      "idempotency_keys": store.idempotency_count(),
                      "balances": store.balances(), "now": store.now()}
        return {**app.stats.snapshot(), **counts,
                "faults_triggered": app.faults.triggered_counts()}
    if (method, path) == ("POST", "/_sandbox/reset"):
        with store.transaction():
            store.reset(app.starting_balances)
        app.faults.clear()
        app.faults.reset_counts()
        app.stats.reset()
        return {"reset": True}
    raise ApiError(404, "invalid_request_error", f"Unknown sandbox admin path ({method}: {path}).")
