"""Client-side rate limiters: what `StripeGateway` calls before every request.

`TokenBucket` (the default) is shared by the worker threads of one process. Runs in several processes
that pay from one Stripe account share `shared_rate_limit.SharedRateLimiter` instead (ledger database).
Both satisfy `RateLimiter`; neither distinguishes kinds of request: transfers, reversals, lists and
retrieves all take from the same budget, as Stripe counts them against the same account.

`TokenBucket` was written by hand (a thread-safe token bucket is ~20 lines) rather than adding a dependency: the
limiter libraries on PyPI are async-first or Redis-backed, and this one must block OS threads.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one request may be sent."""


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate / 10))
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one request may be sent."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)
