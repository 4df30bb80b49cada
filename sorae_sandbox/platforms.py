"""Platform accounts: one Stripe platform account per API key, each with its own world.

On Stripe a secret key belongs to exactly one account; everything done with it (connected accounts,
transfers, charges, top-ups, the balance, idempotency keys, the rate limit) belongs to that account
and is invisible to the keys of other accounts. The sandbox serves several such platform accounts:

* **The default platform** exists in every state file (its id is what ``GET /v1/account`` answered
  before platforms existed, so old state files keep their account). Started without ``api_keys``
  it is *open*: any well-formed test key that no other platform owns authenticates as the default
  platform (what tests, the demo and the benchmarks have always relied on: "any sk_test_ key
  works"). Started with ``api_keys`` (``SandboxServer(api_keys=[...])``, ``--api-key``) it
  accepts those keys only, and every other key is refused with 401 like Stripe.
* **Additional platforms** are created with their key by ``POST /_sandbox/platforms`` (or
  ``SandboxServer(platforms={key: balances})`` / ``--platform KEY[:CUR=AMOUNT,...]`` at start-up)
  and answer to that key only.

Keys are kept as SHA-256 hashes (plus Stripe's masked form for display): the state file never holds
a usable key. An unknown key answers 401 ``invalid_request_error`` "Invalid API Key provided:
sk_test_****abcd" (Stripe's type and wording for a bad key; the SDK raises AuthenticationError).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .wire import mask_key, new_id


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class PlatformMixin:
    """Platform rows and the key index, mixed into ``Store`` (which provides ``conn``, ``now()``,
    ``_meta()`` and holds the lock around every call)."""

    conn: Any
    _key_index: dict[str, str]
    _keys_changed: bool

    def default_platform_id_from_meta(self) -> str:
        """The default platform's id, minted on first use and kept in ``meta`` (where state files from
        before platforms keep it too)."""
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('platform_account', ?)", (new_id("acct", 16),)
        )
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('platform_created', ?)", (str(self.now()),))
        return self._meta("platform_account", "")

    def ensure_default_platform(self) -> str:
        acct = self.default_platform_id_from_meta()
        self.conn.execute(
            "INSERT OR IGNORE INTO platforms (id, created, is_default) VALUES (?, ?, 1)",
            (acct, int(self._meta("platform_created", "0"))),
        )
        return acct

    def default_platform(self) -> str:
        return self.conn.execute("SELECT id FROM platforms WHERE is_default = 1").fetchone()[0]

    def create_platform(self) -> str:
        acct = new_id("acct", 16)
        self.conn.execute("INSERT INTO platforms (id, created, is_default) VALUES (?, ?, 0)", (acct, self.now()))
        return acct

    def platform(self, acct: str) -> dict[str, Any] | None:
        """id, created, default and the masked keys of one platform, or None."""
        row = self.conn.execute("SELECT id, created, is_default FROM platforms WHERE id = ?", (acct,)).fetchone()
        if row is None:
            return None
        keys = [
            m
            for (m,) in self.conn.execute(
                "SELECT masked FROM platform_keys WHERE platform = ? ORDER BY masked", (acct,)
            )
        ]
        return {"id": row[0], "created": row[1], "default": bool(row[2]), "api_keys": keys}

    def platform_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM platforms ORDER BY seq")]

    # -- keys --------------------------------------------------------------------------------------

    def load_key_index(self) -> None:
        """Read every key hash into memory: authentication looks keys up without taking the lock."""
        self._key_index = dict(self.conn.execute("SELECT key_hash, platform FROM platform_keys"))

    def key_platform(self, api_key: str) -> str | None:
        """The platform that owns ``api_key``, or None (read from memory, lock-free)."""
        return self._key_index.get(key_hash(api_key))

    def register_key(self, api_key: str, acct: str) -> None:
        digest = key_hash(api_key)
        self.conn.execute(
            "INSERT INTO platform_keys (key_hash, platform, masked) VALUES (?, ?, ?)", (digest, acct, mask_key(api_key))
        )
        # A new dict rather than an in-place update: lock-free readers see the old or the new one.
        self._key_index = {**self._key_index, digest: acct}
        self._keys_changed = True


def account_view(acct: str, created: int, is_default: bool) -> dict[str, Any]:
    """``GET /v1/account``: the platform account behind the API key, as Stripe describes it."""
    label = "platform" if is_default else f"platform-{acct[-6:].lower()}"
    return {
        "id": acct,
        "object": "account",
        "type": "standard",
        "country": "US",
        "email": f"{label}@sandbox.invalid",
        "business_type": "company",
        "default_currency": "usd",
        "created": created,
        "livemode": False,
        "metadata": {},
        "business_profile": {"name": "Stripe sandbox platform", "url": None, "mcc": None},
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "payouts_enabled": True,
        "details_submitted": True,
        "requirements": {
            "currently_due": [],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
            "errors": [],
            "current_deadline": None,
            "disabled_reason": None,
        },
        "settings": {"payouts": {"schedule": {"interval": "daily", "delay_days": 2}}},
    }
