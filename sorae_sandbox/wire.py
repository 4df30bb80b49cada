"""Stripe's wire format, as the sandbox speaks it.

Stripe's v1 API takes ``application/x-www-form-urlencoded`` bodies whose keys nest with brackets
(``metadata[item_id]=x``, ``capabilities[transfers][requested]=true``, ``expand[0]=y``) and answers
with JSON. Errors are ``{"error": {"type", "code", "message", "param"}}`` with an HTTP status the
official SDK maps to its exception classes (400/404 -> InvalidRequestError or IdempotencyError,
401 -> AuthenticationError, 429 -> RateLimitError, anything else -> APIError).

This module holds only pure helpers (no state): form decoding, ids, the error type, the response
value the server writes, and small parameter parsers shared by the endpoints.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

_ALPHABET = string.ascii_letters + string.digits
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking object id such as ``tr_1Qx...``: prefix, underscore, random base62."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def decode_form(raw: str) -> dict[str, Any]:
    """Decode a Stripe form body or query string into nested dicts and lists.

    ``a[b][c]=1`` becomes ``{"a": {"b": {"c": "1"}}}``; ``a[0]=x&a[1]=y`` (how stripe-python encodes
    lists) and ``a[]=x`` become lists. Values stay strings: each endpoint parses its own types, as
    Stripe does, so that ``amount=abc`` can be reported as an invalid integer.
    """
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head] + _BRACKETS.findall(key[len(head) :])
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # "a[]" appends to a list kept under a synthetic index
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    """Turn dicts whose keys are all 0..n-1 into lists (bracket-indexed arrays)."""
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        keys = sorted(node, key=int)
        if [int(k) for k in keys] == list(range(len(keys))):
            return [node[k] for k in keys]
    return node


def mask_key(key: str) -> str:
    """An API key as Stripe shows it in error messages: its ``sk_test_``-style prefix, asterisks for the
    middle, the last four characters (``sk_test_********************1234``); short keys show less."""
    prefix = key[: key.index("_", 3) + 1] if key.count("_") >= 2 and len(key) > 12 else key[:3]
    return prefix + "*" * max(len(key) - len(prefix) - 4, 4) + (key[-4:] if len(key) > 12 else "")


def fingerprint(method: str, path: str, params: dict[str, Any]) -> str:
    """Canonical text of a request, compared by the idempotency layer to detect a reused key."""
    return json.dumps([method.upper(), path, params], sort_keys=True, separators=(",", ":"))


def to_json(body: Any) -> bytes:
    return json.dumps(body, indent=2, sort_keys=False).encode("utf-8")


class ApiError(Exception):
    """A Stripe API error: HTTP status plus the ``error`` object the SDK turns into an exception."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        return {"error": err}

    def response(self) -> Response:
        return Response(self.status, self.body(), dict(self.headers))


def invalid(message: str, code: str | None = None, param: str | None = None, status: int = 400) -> ApiError:
    """The common case: a 400 ``invalid_request_error``."""
    return ApiError(status, "invalid_request_error", message, code, param)


def missing(kind: str, obj_id: str, param: str, status: int = 404) -> ApiError:
    """``resource_missing``, worded as Stripe words it ("No such transfer: 'tr_123'")."""
    return invalid(f"No such {kind}: '{obj_id}'", "resource_missing", param, status)


def api_error_500() -> ApiError:
    return ApiError(
        500,
        "api_error",
        "An unknown error occurred while processing your request "
        "(sandbox fault injection). Retry with the same Idempotency-Key.",
    )


@dataclass
class Response:
    """What the server writes back; ``drop`` means close the socket without answering. ``platform``:
    the platform account the API key named (for per-platform stats), None before authentication."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    platform: str | None = None


def list_object(data: list[dict[str, Any]], has_more: bool, url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# -- parameter parsing shared by endpoints (all raise ApiError: validation, never stored) ------


def reject_unknown(params: dict[str, Any], allowed: set[str]) -> None:
    """Stripe refuses parameters it does not know; catching typos beats silently ignoring them."""
    for name in params:
        if name not in allowed:
            raise invalid(f"Received unknown parameter: {name}", "parameter_unknown", name)


def parse_int(
    params: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    too_small: str = "parameter_invalid_integer",
    too_large: str = "parameter_invalid_integer",
) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise invalid(f"Missing required param: {name}.", "parameter_missing", name)
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d{1,19}", raw.strip()):
        raise invalid(f"Invalid integer: {raw}", "parameter_invalid_integer", name)
    value = int(raw)
    if minimum is not None and value < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.", too_small, name)
    if maximum is not None and value > maximum:
        raise invalid(f"This value must be less than or equal to {maximum}.", too_large, name)
    return value


def parse_str(params: dict[str, Any], name: str, *, required: bool = False, max_len: int = 5000) -> str | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise invalid(f"Missing required param: {name}.", "parameter_missing", name)
        return None
    if not isinstance(raw, str):
        raise invalid(f"Invalid string: {name} must be a string.", "parameter_invalid_string", name)
    if required and raw.strip() == "":
        raise invalid(f"Missing required param: {name}.", "parameter_missing", name)
    if len(raw) > max_len:
        raise invalid(f"Invalid string: {name} is longer than {max_len} characters.", "parameter_invalid_string", name)
    return raw


def parse_bool(raw: Any, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise invalid(f"Invalid boolean: {raw}", "parameter_invalid_boolean", name)


def parse_metadata(params: dict[str, Any]) -> dict[str, str]:
    """Stripe metadata: at most 50 keys, keys up to 40 chars, values up to 500 chars.

    An empty value unsets a key, so it is simply dropped on create.
    """
    raw = params.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid(
            "Invalid object: metadata must be a hash of key/value pairs.", "parameter_invalid_object", "metadata"
        )
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise invalid(
                f"Invalid metadata value for key {key}: nested objects are not allowed.",
                "parameter_invalid_string",
                f"metadata[{key}]",
            )
        if len(key) > 40:
            raise invalid(f"Metadata key {key!r} is longer than 40 characters.", None, "metadata")
        if len(value) > 500:
            raise invalid(f"Metadata value for key {key!r} is longer than 500 characters.", None, f"metadata[{key}]")
        if value != "":
            out[key] = value
    if len(out) > 50:
        raise invalid("You can only specify up to 50 metadata keys.", None, "metadata")
    return out


def parse_list_params(params: dict[str, Any], filters: tuple[str, ...]) -> tuple[int, str | None]:
    """``limit`` (1..100, default 10) and ``starting_after`` of a list endpoint."""
    reject_unknown(params, set(filters) | {"limit", "starting_after", "ending_before", "expand"})
    if "ending_before" in params:
        # Backwards paging is not needed by the payout engine; say so instead of ignoring it.
        raise invalid("ending_before is not supported by the sandbox.", "parameter_unknown", "ending_before")
    limit = parse_int(params, "limit", minimum=1, maximum=100) or 10
    return limit, parse_str(params, "starting_after")
