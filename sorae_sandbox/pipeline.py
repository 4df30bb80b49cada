"""The request pipeline of ``/v1``: authentication, rate limiting, idempotency, faults, dispatch.

The order of the steps is what gives the sandbox Stripe's observable semantics:

1. ``Authorization: Bearer sk_test_...`` names the platform account the request acts for (see
   ``platforms.py``), or 401. Everything below is per platform: its own rate limiter, its own
   idempotency keys (the same key under two platforms is two different requests), its objects.
2. The platform's rate limiter (``--rate-limit``: each platform gets that many requests per second)
   and ``rate_limit_429`` faults: 429, nothing stored.
3. Routing (unknown URL: 404).
4. For a POST carrying an ``Idempotency-Key``: a key still executing -> 409
   ``idempotency_key_in_use``; a stored key (younger than 24 h on the sandbox clock) -> replay of
   the stored status and body with ``Idempotent-Replayed: true`` (different parameters -> 400
   ``idempotency_error``); otherwise the key is claimed in memory.
5. Parameter validation: errors answered, not stored.
6. Latency (``--latency-ms`` and ``latency`` faults), slept outside every lock so concurrent
   requests overlap, and while the key is claimed so a concurrent duplicate sees 409.
7. Execution in one SQLite transaction, which also stores the response under the key, so the
   transfer, the balance debit and the idempotency record commit together. Business errors
   (e.g. ``balance_insufficient``) are stored too: the endpoint had begun executing.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from .faults import FaultInjector, TokenBucket
from .handlers import Endpoint, route
from .stats import Stats
from .store import Store
from .wire import ApiError, Response, api_error_500, decode_form, fingerprint, invalid, mask_key

RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. Sandbox limit reached; slow down or retry "
    "later. See https://stripe.com/docs/rate-limits."
)


class SandboxApp:
    """Everything behind the HTTP layer: state, platforms, faults, limiters, in-flight keys, stats.

    ``api_keys``: the default platform's keys; None keeps the default platform open to any test key
    no other platform owns. ``platforms``: additional platforms created at start-up, API key ->
    starting balances (as ``POST /_sandbox/platforms`` would).
    """

    def __init__(
        self,
        store: Store,
        latency_ms: int = 0,
        rate_limit: float | None = None,
        balances: dict[str, int] | None = None,
        allow_live_keys: bool = False,
        api_keys: list[str] | None = None,
        platforms: dict[str, dict[str, int]] | None = None,
    ):
        self.store = store
        # Tests of the live-money rule need a Stripe that takes sk_live_ keys; never on by default.
        self.key_prefixes = ("sk_test_", "sk_live_") if allow_live_keys else ("sk_test_",)
        self.latency_ms = latency_ms
        self.rate_limit = rate_limit
        self._limiters: dict[str, TokenBucket] = {}
        self._limiters_lock = threading.Lock()
        self.starting_balances = {c.lower(): int(a) for c, a in (balances or {}).items()}
        self.default_keys = list(api_keys) if api_keys is not None else None
        self.startup_platforms = {k: dict(b) for k, b in (platforms or {}).items()}
        self.faults = FaultInjector()
        self.stats = Stats()
        # (platform, key) of requests executing right now. In memory only: a restarted server
        # has no request in flight.
        self._inflight: set[tuple[str, str]] = set()
        self._inflight_lock = threading.Lock()
        with store.transaction():
            self.apply_startup()

    def apply_startup(self) -> None:
        """Seed the default platform, register its keys and the start-up platforms (at start and
        after a reset). The caller holds a store transaction."""
        store = self.store
        self.default_platform = store.default_platform()
        store.seed_balances(self.default_platform, self.starting_balances)
        for key in self.default_keys or []:
            self.check_key_form(key)
            owner = store.key_platform(key)
            if owner is None:
                store.register_key(key, self.default_platform)
            elif owner != self.default_platform:
                raise ValueError(f"API key {mask_key(key)} already belongs to platform {owner}")
        for key, balances in self.startup_platforms.items():
            self.add_platform(key, balances)

    def add_platform(self, api_key: str, balances: dict[str, int]) -> tuple[str, bool]:
        """The platform of ``api_key``, created (True) unless the key has one; ``balances`` seed the
        currencies it does not hold yet. The caller holds a store transaction."""
        self.check_key_form(api_key)
        owner = self.store.key_platform(api_key)
        created = owner is None
        if owner is None:
            owner = self.store.create_platform()
            self.store.register_key(api_key, owner)
        self.store.seed_balances(owner, balances)
        return owner, created

    def check_key_form(self, api_key: Any) -> None:
        if (
            not isinstance(api_key, str)
            or not api_key.startswith(self.key_prefixes)
            or not re.fullmatch(r"[A-Za-z0-9_]{12,255}", api_key)
        ):
            raise invalid(
                f"api_key must be a secret key starting with {' or '.join(self.key_prefixes)}, "
                "12 to 255 letters, digits or underscores",
                param="api_key",
            )

    def handle_v1(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: str, request_id: str
    ) -> Response:
        platform = None
        try:
            key, platform = self._authenticate(headers.get("Authorization"))
            self.stats.received(platform)
            limiter = self._limiter(platform)
            if limiter is not None and not limiter.take():
                raise self._rate_limited(platform)
            endpoint, args = route(method, path.rstrip("/") or path)
            if method == "POST" and self.faults.rate_limited(path, platform):
                raise self._rate_limited(platform)
            params = decode_form(body if method == "POST" else query)
            # Reads may name the (masked) key, as Stripe's 403s do.
            args = {**args, "api_key": key, "platform": platform}
            if endpoint.writes:
                response = self._write(endpoint, args, method, path, params, headers, request_id)
            else:
                self._sleep(self.latency_ms)
                assert endpoint.read is not None
                with self.store.reading():
                    response = Response(200, endpoint.read(self.store, params, args))
        except ApiError as err:
            response = err.response()
        response.platform = platform
        return response

    # -- steps ---------------------------------------------------------------------------------

    def _limiter(self, platform: str) -> TokenBucket | None:
        if not self.rate_limit:
            return None
        limiter = self._limiters.get(platform)
        if limiter is None:
            with self._limiters_lock:
                limiter = self._limiters.setdefault(platform, TokenBucket(self.rate_limit))
        return limiter

    def _authenticate(self, header: str | None) -> tuple[str, str]:
        """The API key and the platform it names, or 401 as Stripe answers it."""
        key = None
        if header and header.startswith("Bearer "):
            key = header[len("Bearer ") :].strip()
        elif header and header.startswith("Basic "):  # curl -u sk_test_...:
            try:
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key = None
        if not key:
            raise ApiError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in "
                "the Authorization header, using Bearer auth (e.g. 'Authorization: "
                "Bearer YOUR_SECRET_KEY').",
            )
        platform = self.store.key_platform(key)
        if platform is None and self.default_keys is None and key.startswith(self.key_prefixes):
            platform = self.default_platform  # the open default platform
        if platform is None:
            # Stripe's type and wording for a key it does not know (the SDK raises AuthenticationError).
            raise ApiError(401, "invalid_request_error", f"Invalid API Key provided: {mask_key(key)}")
        return key, platform

    def _rate_limited(self, platform: str) -> ApiError:
        self.stats.rate_limited(platform)
        return ApiError(429, "invalid_request_error", RATE_LIMIT_MESSAGE, "rate_limit")

    @staticmethod
    def _sleep(ms: int) -> None:
        if ms > 0:
            time.sleep(ms / 1000.0)

    def _write(
        self,
        endpoint: Endpoint,
        args: dict[str, str],
        method: str,
        path: str,
        params: dict[str, Any],
        headers: Mapping[str, str],
        request_id: str,
    ) -> Response:
        key = headers.get("Idempotency-Key")
        platform = args["platform"]
        fp = fingerprint(method, path, params)
        if key is not None:
            if not key or len(key) > 255:
                raise invalid("Idempotency-Key must be between 1 and 255 characters long.", param="Idempotency-Key")
            with self._inflight_lock:
                if (platform, key) in self._inflight:
                    self.stats.bump("idempotency_conflicts")
                    raise ApiError(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this "
                        f"Idempotency Key ('{key}'). Try again later.",
                        "idempotency_key_in_use",
                    )
                with self.store.reading():
                    record = self.store.idempotency_record(platform, key)
                if record is None:
                    self._inflight.add((platform, key))
            if record is not None:
                return self._replay(key, record, fp, path, platform)
        try:
            return self._execute(endpoint, args, path, params, key, fp, request_id)
        finally:
            if key is not None:
                with self._inflight_lock:
                    self._inflight.discard((platform, key))

    def _replay(self, key: str, record: dict[str, Any], fp: str, path: str, platform: str) -> Response:
        if record["fingerprint"] != fp:
            raise ApiError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with. Try using a key other than "
                f"'{key}' if you meant to execute a different request.",
            )
        self._sleep(self.latency_ms + self.faults.extra_latency_ms(path, platform))
        self.stats.bump("replays")
        headers = {
            **record["headers"],
            "Idempotency-Key": key,
            "Idempotent-Replayed": "true",
            "Original-Request": record["request_id"],
        }
        return Response(record["status"], record["body"], headers)

    def _execute(
        self,
        endpoint: Endpoint,
        args: dict[str, str],
        path: str,
        params: dict[str, Any],
        key: str | None,
        fp: str,
        request_id: str,
    ) -> Response:
        assert endpoint.validate is not None and endpoint.execute is not None
        values = endpoint.validate(params, args)  # raises before anything is stored
        platform = args["platform"]
        self._sleep(self.latency_ms + self.faults.extra_latency_ms(path, platform))
        fault = self.faults.outcome(path, platform)
        if fault == "error_500_before_commit":
            raise api_error_500()
        with self.store.transaction() as st:
            try:
                with st.savepoint():
                    status, body, extra = 200, endpoint.execute(st, values, args, st.now()), {}
            except ApiError as err:
                status, body, extra = err.status, err.body(), dict(err.headers)
            if fault == "error_500_after_commit":
                # The work above commits; the answer is a 500, and that 500 is what the key
                # stores. Stripe marks such stored 500s as not worth retrying.
                err = api_error_500()
                status, body, extra = 500, err.body(), {"Stripe-Should-Retry": "false"}
            if key is not None:
                st.save_idempotency(platform, key, fp, status, body, extra, request_id)
        self.stats.bump("executed_writes")
        if key is not None:
            extra["Idempotency-Key"] = key
        return Response(status, body, extra, drop=fault == "drop_after_commit")
