"""The request pipeline of ``/v1``: authentication, rate limiting, idempotency, faults, dispatch.

The order of the steps is what gives the sandbox Stripe's observable semantics:

1. ``Authorization: Bearer sk_test_...`` or 401.
2. Rate limiter (``--rate-limit``) and ``rate_limit_429`` faults: 429, nothing stored.
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
import threading
import time
from typing import Any, Mapping

from .faults import FaultInjector, TokenBucket
from .handlers import Endpoint, route
from .store import Store
from .wire import ApiError, Response, api_error_500, decode_form, fingerprint, invalid

RATE_LIMIT_MESSAGE = ("Request rate limit exceeded. Sandbox limit reached; slow down or retry "
                      "later. See https://stripe.com/docs/rate-limits.")


class Stats:
    """Counters for ``GET /_sandbox/stats`` (benchmarks and tests read them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0  # not reset: requests in flight during a reset still leave()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.counters: dict[str, int] = {
                "requests": 0, "v1_requests": 0, "admin_requests": 0, "replays": 0,
                "idempotency_conflicts": 0, "rate_limited": 0, "dropped_connections": 0,
                "executed_writes": 0}
            self.by_status: dict[str, int] = {}
            self.peak_in_flight = self.in_flight

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self, path: str, response: Response) -> None:
        with self._lock:
            self.in_flight -= 1
            self.counters["requests"] += 1
            kind = "admin_requests" if path.startswith("/_sandbox") else "v1_requests"
            self.counters[kind] += 1
            status = "dropped" if response.drop else str(response.status)
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if response.drop:
                self.counters["dropped_connections"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counters, "by_status": dict(self.by_status),
                    "in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight}


class SandboxApp:
    """Everything behind the HTTP layer: state, faults, limiter, in-flight keys, stats."""

    def __init__(self, store: Store, latency_ms: int = 0, rate_limit: float | None = None,
                 balances: dict[str, int] | None = None, allow_live_keys: bool = False):
        self.store = store
        # Tests of the live-money rule need a Stripe that takes sk_live_ keys; never on by default.
        self.key_prefixes = ("sk_test_", "sk_live_") if allow_live_keys else ("sk_test_",)
        self.latency_ms = latency_ms
        self.limiter = TokenBucket(rate_limit) if rate_limit else None
        self.starting_balances = {c.lower(): int(a) for c, a in (balances or {}).items()}
        self.faults = FaultInjector()
        self.stats = Stats()
        # Keys whose first request is executing right now. In memory only: a restarted server
        # has no request in flight.
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()

    def handle_v1(self, method: str, path: str, query: str, headers: Mapping[str, str],
                  body: str, request_id: str) -> Response:
        try:
            key = self._authenticate(headers.get("Authorization"), self.key_prefixes)
            if self.limiter is not None and not self.limiter.take():
                raise self._rate_limited()
            endpoint, args = route(method, path.rstrip("/") or path)
            if method == "POST" and self.faults.rate_limited(path):
                raise self._rate_limited()
            params = decode_form(body if method == "POST" else query)
            if endpoint.writes:
                return self._write(endpoint, args, method, path, params, headers, request_id)
            self._sleep(self.latency_ms)
            assert endpoint.read is not None
            with self.store.reading():  # reads may name the (masked) key, as Stripe's 403s do
                return Response(200, endpoint.read(self.store, params, {**args, "api_key": key}))
        except ApiError as err:
            return err.response()

    # -- steps ---------------------------------------------------------------------------------

    @staticmethod
    def _authenticate(header: str | None, prefixes: tuple[str, ...]) -> str:
        key = None
        if header and header.startswith("Bearer "):
            key = header[len("Bearer "):].strip()
        elif header and header.startswith("Basic "):  # curl -u sk_test_...:
            try:
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key = None
        if not key:
            raise ApiError(401, "invalid_request_error",
                           "You did not provide an API key. You need to provide your API key in "
                           "the Authorization header, using Bearer auth (e.g. 'Authorization: "
                           "Bearer YOUR_SECRET_KEY').")
        if not key.startswith(prefixes):
            shown = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else key[:3] + "****"
            raise ApiError(401, "invalid_request_error",
                           f"Invalid API Key provided: {shown}. The sandbox accepts test-mode "
                           "secret keys (sk_test_...) only.")
        return key

    def _rate_limited(self) -> ApiError:
        self.stats.bump("rate_limited")
        return ApiError(429, "invalid_request_error", RATE_LIMIT_MESSAGE, "rate_limit")

    @staticmethod
    def _sleep(ms: int) -> None:
        if ms > 0:
            time.sleep(ms / 1000.0)

    def _write(self, endpoint: Endpoint, args: dict[str, str], method: str, path: str,
               params: dict[str, Any], headers: Mapping[str, str], request_id: str) -> Response:
        key = headers.get("Idempotency-Key")
        fp = fingerprint(method, path, params)
        if key is not None:
            if not key or len(key) > 255:
                raise invalid("Idempotency-Key must be between 1 and 255 characters long.",
                              param="Idempotency-Key")
            with self._inflight_lock:
                if key in self._inflight:
                    self.stats.bump("idempotency_conflicts")
                    raise ApiError(409, "idempotency_error",
                                   "There is currently another in-progress request using this "
                                   f"Idempotency Key ('{key}'). Try again later.",
                                   "idempotency_key_in_use")
                with self.store.reading():
                    record = self.store.idempotency_record(key)
                if record is None:
                    self._inflight.add(key)
            if record is not None:
                return self._replay(key, record, fp, path)
        try:
            return self._execute(endpoint, args, path, params, key, fp, request_id)
        finally:
            if key is not None:
                with self._inflight_lock:
                    self._inflight.discard(key)

    def _replay(self, key: str, record: dict[str, Any], fp: str, path: str) -> Response:
        if record["fingerprint"] != fp:
            raise ApiError(400, "idempotency_error",
                           "Keys for idempotent requests can only be used with the same "
                           "parameters they were first used with. Try using a key other than "
                           f"'{key}' if you meant to execute a different request.")
        self._sleep(self.latency_ms + self.faults.extra_latency_ms(path))
        self.stats.bump("replays")
        headers = {**record["headers"], "Idempotency-Key": key, "Idempotent-Replayed": "true",
                   "Original-Request": record["request_id"]}
        return Response(record["status"], record["body"], headers)

    def _execute(self, endpoint: Endpoint, args: dict[str, str], path: str,
                 params: dict[str, Any], key: str | None, fp: str, request_id: str) -> Response:
        assert endpoint.validate is not None and endpoint.execute is not None
        values = endpoint.validate(params, args)  # raises before anything is stored
        self._sleep(self.latency_ms + self.faults.extra_latency_ms(path))
        fault = self.faults.outcome(path)
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
                st.save_idempotency(key, fp, status, body, extra, request_id)
        self.stats.bump("executed_writes")
        if key is not None:
            extra["Idempotency-Key"] = key
        return Response(status, body, extra, drop=fault == "drop_after_commit")
