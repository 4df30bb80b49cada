"""A platform's balance: available funds per currency, and the funds of charges not yet available.

Where the money of a platform comes from and goes to:

* starting balances (``SandboxServer(balances=...)``, ``--balance``) and ``POST /_sandbox/balance``
  are available at once; so are top-ups (a simplification: Stripe's top-ups wait for the bank
  transfer until ``expected_availability_date``);
* a charge's funds are **pending** until its ``available_on`` time on the sandbox clock, as on
  Stripe: 2 days after the charge for test cards such as ``tok_visa``, at once for
  ``tok_bypassPending`` (Stripe's test token for the card 4000 0000 0000 0077, which "bypasses the
  pending balance"). Advancing the clock (``POST /_sandbox/clock/advance``) makes them available;
* a transfer without ``source_transaction`` spends available funds (``balance_insufficient``
  otherwise); a transfer with ``source_transaction`` draws from that charge's funds: from its
  pending funds while the charge is pending (the platform's available balance is not touched, so
  it may be 0), from the available balance once the charge's funds have become available;
* a reversal gives the reversed amount back to the available balance.

The charge's remaining funds (amount minus what transfers drew from it) move into the available
balance when the charge becomes available ("settles"). Settlement happens lazily: at the start of
every write on the platform (``settle_charges``); reads compute the same figures without writing
(``balance_summary``).
"""

from __future__ import annotations

import json
from typing import Any

CHARGE_PENDING_SECONDS = 2 * 24 * 3600  # Stripe's standard US delay for card payments


class BalanceMixin:
    """Balances and charge funds, mixed into ``Store`` (which provides ``conn`` and ``now()``)."""

    conn: Any

    def seed_balances(self, platform: str, balances: dict[str, int]) -> None:
        """Starting balances apply only to currencies the platform does not hold yet, so a restart
        with the same ``--balance`` options does not refill a drained balance."""
        for currency, amount in balances.items():
            self.conn.execute(
                "INSERT OR IGNORE INTO balances (platform, currency, available) VALUES (?, ?, ?)",
                (platform, currency.lower(), int(amount)),
            )

    def available(self, platform: str, currency: str) -> int:
        """Available funds, settled charges included (call ``settle_charges`` first in a write)."""
        row = self.conn.execute(
            "SELECT available FROM balances WHERE platform = ? AND currency = ?", (platform, currency)
        ).fetchone()
        return row[0] if row else 0

    def adjust_balance(self, platform: str, currency: str, delta: int) -> int:
        self.conn.execute(
            "INSERT INTO balances (platform, currency, available) VALUES (?, ?, ?) "
            "ON CONFLICT (platform, currency) DO UPDATE SET available = available + excluded.available",
            (platform, currency, delta),
        )
        return self.available(platform, currency)

    def settle_charges(self, platform: str) -> None:
        """Move what is left of every charge whose funds became available into the available balance."""
        rows = self.conn.execute(
            "SELECT id, currency, amount - transferred FROM charges "
            "WHERE platform = ? AND settled = 0 AND available_on <= ?",
            (platform, self.now()),
        ).fetchall()
        for charge_id, currency, rest in rows:
            self.adjust_balance(platform, currency, rest)
            self.conn.execute("UPDATE charges SET settled = 1 WHERE id = ?", (charge_id,))

    def balance_summary(self, platform: str) -> tuple[dict[str, int], dict[str, int]]:
        """(available, pending) per currency, as they stand now (without writing)."""
        available = dict(
            self.conn.execute(
                "SELECT currency, available FROM balances WHERE platform = ? ORDER BY currency", (platform,)
            )
        )
        pending: dict[str, int] = {}
        now = self.now()
        rows = self.conn.execute(
            "SELECT currency, available_on, amount - transferred FROM charges WHERE platform = ? AND settled = 0",
            (platform,),
        )
        for currency, available_on, rest in rows:
            target = available if available_on <= now else pending
            target[currency] = target.get(currency, 0) + rest
            available.setdefault(currency, 0)
        return dict(sorted(available.items())), dict(sorted(pending.items()))

    # -- charges (their objects, and how much of each transfers have drawn) -------------------

    def insert_charge(self, platform: str, obj: dict[str, Any], available_on: int) -> None:
        self.conn.execute(
            "INSERT INTO charges (id, platform, currency, amount, available_on, data) VALUES (?, ?, ?, ?, ?, ?)",
            (obj["id"], platform, obj["currency"], obj["amount"], available_on, json.dumps(obj)),
        )

    def charge(self, platform: str, charge_id: str) -> tuple[dict[str, Any], dict[str, int]] | None:
        """The charge object and its funds (``transferred``, ``settled``, ``available_on``), or None
        when no charge of this platform has that id."""
        row = self.conn.execute(
            "SELECT data, transferred, settled, available_on FROM charges WHERE id = ? AND platform = ?",
            (charge_id, platform),
        ).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), {"transferred": row[1], "settled": row[2], "available_on": row[3]}

    def draw_from_charge(self, charge_id: str, amount: int) -> None:
        self.conn.execute("UPDATE charges SET transferred = transferred + ? WHERE id = ?", (amount, charge_id))


def balance_view(store: Any, platform: str) -> dict[str, Any]:
    """``GET /v1/balance`` of one platform."""
    available, pending = store.balance_summary(platform)
    return {
        "object": "balance",
        "available": [{"amount": a, "currency": c, "source_types": {"card": a}} for c, a in available.items()],
        # A Connect platform's balance also lists what is reserved for connected accounts (nothing here).
        "connect_reserved": [{"amount": 0, "currency": c} for c in available],
        "pending": [{"amount": a, "currency": c, "source_types": {"card": a}} for c, a in pending.items()],
        "livemode": False,
    }
