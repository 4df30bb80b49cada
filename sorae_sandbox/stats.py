"""Request counters for ``GET /_sandbox/stats`` (benchmarks and tests read them), overall and per platform."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .wire import Response


class Stats:
    """Counters for ``GET /_sandbox/stats`` (benchmarks and tests read them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0  # not reset: requests in flight during a reset still leave()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.counters: dict[str, int] = {
                "requests": 0,
                "v1_requests": 0,
                "admin_requests": 0,
                "replays": 0,
                "idempotency_conflicts": 0,
                "rate_limited": 0,
                "dropped_connections": 0,
                "executed_writes": 0,
            }
            self.by_status: dict[str, int] = {}
            self.peak_in_flight = self.in_flight
            self.platforms: dict[str, dict[str, int]] = {}
            self._windows: dict[str, deque[float]] = {}

    def _platform(self, platform: str) -> dict[str, int]:
        return self.platforms.setdefault(
            platform,
            {
                "v1_requests": 0,
                "rate_limited": 0,
                "peak_requests_in_1s": 0,
                "first_request_s": 0.0,
                "last_request_s": 0.0,
            },
        )

    def received(self, platform: str) -> None:
        """An authenticated request of ``platform`` arrived: keep the most requests seen in any sliding
        one-second window (what "never above the limit at Stripe" is measured by)."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(platform, deque())
            window.append(now)
            while window[0] <= now - 1.0:
                window.popleft()
            entry = self._platform(platform)
            entry["peak_requests_in_1s"] = max(entry["peak_requests_in_1s"], len(window))
            # Seconds (monotonic) of the first and last request: a benchmark's request rate over the
            # time the platform was actually busy.
            entry["first_request_s"] = entry["first_request_s"] or now
            entry["last_request_s"] = now

    def rate_limited(self, platform: str) -> None:
        with self._lock:
            self.counters["rate_limited"] += 1
            self._platform(platform)["rate_limited"] += 1

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
            if response.platform is not None:
                self._platform(response.platform)["v1_requests"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.counters,
                "by_status": dict(self.by_status),
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "platforms": {p: dict(v) for p, v in self.platforms.items()},
            }
