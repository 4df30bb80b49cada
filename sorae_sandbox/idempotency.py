"""Stripe's idempotency records: the stored first response of each ``Idempotency-Key``, per platform.

The same key under two platform accounts is two different requests (on Stripe a key belongs to the
account whose API key sent it). Records expire 24 hours after first use on the sandbox clock.
"""

from __future__ import annotations

import json
from typing import Any

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


class IdempotencyMixin:
    """Idempotency records, mixed into ``Store`` (which provides ``conn`` and ``now()``)."""

    conn: Any

    def prune_idempotency(self) -> int:
        """Forget keys first used 24 h ago or more on the sandbox clock, as Stripe may."""
        return self.conn.execute(
            "DELETE FROM idempotency WHERE created_at <= ?", (self.now() - IDEMPOTENCY_TTL_SECONDS,)
        ).rowcount

    def idempotency_record(self, platform: str, key: str) -> dict[str, Any] | None:
        """The stored first response for ``key``, or None if never seen or older than 24 h."""
        row = self.conn.execute(
            "SELECT fingerprint, status, body, headers, request_id, created_at "
            "FROM idempotency WHERE platform = ? AND key = ?",
            (platform, key),
        ).fetchone()
        if row is None or self.now() - row[5] >= IDEMPOTENCY_TTL_SECONDS:
            return None  # an expired key behaves exactly like a new one
        return {
            "fingerprint": row[0],
            "status": row[1],
            "body": json.loads(row[2]),
            "headers": json.loads(row[3]),
            "request_id": row[4],
            "created_at": row[5],
        }

    def save_idempotency(
        self,
        platform: str,
        key: str,
        fingerprint: str,
        status: int,
        body: Any,
        headers: dict[str, str],
        request_id: str,
    ) -> None:
        now = self.now()
        # Prune what Stripe would have pruned; also frees the key if it was expired.
        self.prune_idempotency()
        self.conn.execute(
            "INSERT OR REPLACE INTO idempotency "
            "(platform, key, fingerprint, status, body, headers, request_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (platform, key, fingerprint, status, json.dumps(body), json.dumps(headers), request_id, now),
        )

    def idempotency_count(self, platform: str | None = None) -> int:
        if platform is None:
            return self.conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM idempotency WHERE platform = ?", (platform,)).fetchone()[0]
