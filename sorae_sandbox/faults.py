"""Fault injection and rate limiting: the failures a payout engine must survive.

Fault modes (each rule matches POSTs whose path starts with ``path_prefix``, of every platform or,
with ``"platform": "acct_..."``, of that platform account only):

* ``latency`` -- sleep ``latency_ms`` more; long enough to make a concurrent duplicate see 409.
* ``error_500_before_commit`` -- answer 500 ``api_error`` before anything executes; nothing is
  created and nothing is stored under the Idempotency-Key, so a retry executes for real.
* ``error_500_after_commit`` -- the request executes and commits, but the client gets a 500;
  that 500 is what the Idempotency-Key stores and replays (as Stripe replays stored 500s), so
  only listing transfers reveals that the money moved.
* ``drop_after_commit`` -- the request executes and commits (its real response is stored under
  the key), then the TCP connection is closed without an answer: the client sees a connection
  error although the transfer exists.
* ``rate_limit_429`` -- answer 429 ``rate_limit`` before anything executes; not stored.

Rules draw from their own ``random.Random(seed)``, so a seeded scenario is reproducible.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .wire import invalid

MODES = ("latency", "error_500_before_commit", "error_500_after_commit", "drop_after_commit", "rate_limit_429")
# Modes that decide the outcome of an executing request; at most one applies per request.
OUTCOME_MODES = ("error_500_before_commit", "error_500_after_commit", "drop_after_commit")


@dataclass
class FaultRule:
    mode: str
    probability: float = 1.0
    count: int | None = None  # remaining triggers; None = unlimited
    path_prefix: str = "/v1/"
    latency_ms: int = 0
    seed: int | None = None
    platform: str | None = None  # None: requests of every platform account
    triggered: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> FaultRule:
        if not isinstance(body, dict):
            raise invalid("fault must be a JSON object")
        unknown = set(body) - {"mode", "probability", "count", "path_prefix", "latency_ms", "seed", "platform"}
        if unknown:
            raise invalid(f"unknown fault field(s): {sorted(unknown)}")
        mode = body.get("mode")
        if mode not in MODES:
            raise invalid(f"mode must be one of {MODES}", param="mode")
        probability = body.get("probability", 1.0)
        if not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise invalid("probability must be a number between 0 and 1", param="probability")
        count = body.get("count")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise invalid("count must be a non-negative integer or null", param="count")
        latency_ms = body.get("latency_ms", 0)
        if not isinstance(latency_ms, int) or latency_ms < 0:
            raise invalid("latency_ms must be a non-negative integer", param="latency_ms")
        if mode == "latency" and latency_ms == 0:
            raise invalid("latency faults need latency_ms > 0", param="latency_ms")
        seed = body.get("seed")
        path_prefix = body.get("path_prefix") or "/v1/"
        if not isinstance(path_prefix, str) or not path_prefix.startswith("/v1"):
            raise invalid("path_prefix must start with /v1", param="path_prefix")
        platform = body.get("platform")
        if platform is not None and (not isinstance(platform, str) or not platform.startswith("acct_")):
            raise invalid("platform must be a platform account id (acct_...) or null", param="platform")
        return cls(mode, float(probability), count, path_prefix, latency_ms, seed, platform, rng=random.Random(seed))

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "probability": self.probability,
            "count": self.count,
            "path_prefix": self.path_prefix,
            "latency_ms": self.latency_ms,
            "seed": self.seed,
            "platform": self.platform,
            "triggered": self.triggered,
        }

    def _fires(self, path: str, platform: str) -> bool:
        if not path.startswith(self.path_prefix) or self.count == 0:
            return False
        if self.platform is not None and self.platform != platform:
            return False
        # Draw even at probability 1 so a seeded sequence does not depend on other rules.
        if self.rng.random() >= self.probability:
            return False
        self.triggered += 1
        if self.count is not None:
            self.count -= 1
        return True


class FaultInjector:
    """The active fault rules, evaluated under a lock (requests arrive on many threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.triggered: dict[str, int] = {}

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def triggered_counts(self) -> dict[str, int]:
        """How many times each mode fired since the last reset (tests poll this)."""
        with self._lock:
            return dict(self.triggered)

    def reset_counts(self) -> None:
        with self._lock:
            self.triggered.clear()

    def _note(self, mode: str) -> None:
        self.triggered[mode] = self.triggered.get(mode, 0) + 1

    def rate_limited(self, path: str, platform: str) -> bool:
        with self._lock:
            for rule in self._rules:
                if rule.mode == "rate_limit_429" and rule._fires(path, platform):
                    self._note(rule.mode)
                    return True
        return False

    def extra_latency_ms(self, path: str, platform: str) -> int:
        total = 0
        with self._lock:
            for rule in self._rules:
                if rule.mode == "latency" and rule._fires(path, platform):
                    self._note(rule.mode)
                    total += rule.latency_ms
        return total

    def outcome(self, path: str, platform: str) -> str | None:
        """The outcome fault for an executing request, if any (first firing rule wins)."""
        with self._lock:
            for rule in self._rules:
                if rule.mode in OUTCOME_MODES and rule._fires(path, platform):
                    self._note(rule.mode)
                    return rule.mode
        return None


class TokenBucket:
    """``--rate-limit N``: N requests per second sustained, bursts of up to N (one bucket per platform).

    Measured on the real (monotonic) clock: rate limits are about wall-clock throughput, not
    about the sandbox clock that tests advance.
    """

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.capacity = max(1.0, float(rate))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False
