"""Persistent state of the sandbox: one SQLite file (the ``--state FILE``).

It holds what a Stripe platform account holds that the payout engine can observe: connected
accounts, transfers and their reversals, the platform's available balance per currency, the
idempotency records (stored responses keyed by ``Idempotency-Key``) and the sandbox clock.

Because a restarted sandbox opens the same file, a payout run that "crashed" against it finds the
same transfers and the same idempotency records, which is what the engine's recovery relies on.

Concurrency: one connection guarded by one lock. Every write happens inside ``transaction()``
(``BEGIN IMMEDIATE`` ... ``COMMIT``), so a transfer, its balance debit and its idempotency record
commit together or not at all. SQLite is fast enough that serializing is not the bottleneck; the
simulated latency is slept outside the lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from .wire import new_id

IDEMPOTENCY_TTL_SECONDS = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS balances (currency TEXT PRIMARY KEY, available INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    invalid INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    destination TEXT NOT NULL, transfer_group TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS transfers_destination ON transfers (destination, seq);
CREATE INDEX IF NOT EXISTS transfers_group ON transfers (transfer_group, seq);
CREATE TABLE IF NOT EXISTS reversals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    transfer TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reversals_transfer ON reversals (transfer, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    body TEXT NOT NULL, headers TEXT NOT NULL, request_id TEXT NOT NULL,
    created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
"""

# Tables and filter columns the generic list query may touch (never user-chosen identifiers).
_LISTABLE = {"accounts": (), "transfers": ("destination", "transfer_group"),
             "reversals": ("transfer",)}


class Store:
    """SQLite-backed state. Callers hold ``reading()`` or ``transaction()`` around every call."""

    def __init__(self, path: str):
        self.path = path
        # One shared connection: the lock below, not SQLite's thread check, serializes use.
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                    timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self._lock = threading.RLock()
        with self.transaction():
            self._ensure_platform_account()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def reading(self) -> Iterator["Store"]:
        with self._lock:
            yield self

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """Serialize on the lock and run one SQLite transaction: all of it commits or none."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo a failed endpoint's partial writes while keeping the surrounding transaction."""
        self.conn.execute("SAVEPOINT endpoint")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO endpoint")
            self.conn.execute("RELEASE endpoint")
            raise
        self.conn.execute("RELEASE endpoint")

    # -- sandbox clock -------------------------------------------------------------------------
    # Stored as an offset from real time so it keeps ticking, survives restarts, and can only be
    # moved forward (idempotency expiry and `created` ordering assume time never goes back).

    def _meta(self, key: str, default: str) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def clock_offset(self) -> int:
        return int(self._meta("clock_offset", "0"))

    def now(self) -> int:
        """Current sandbox time in unix seconds (what `created` fields show)."""
        return int(time.time()) + self.clock_offset()

    def advance_clock(self, seconds: int) -> int:
        self._set_meta("clock_offset", str(self.clock_offset() + seconds))
        self.prune_idempotency()
        return self.now()

    def prune_idempotency(self) -> int:
        """Forget keys first used 24 h ago or more on the sandbox clock, as Stripe may."""
        return self.conn.execute("DELETE FROM idempotency WHERE created_at <= ?",
                                 (self.now() - IDEMPOTENCY_TTL_SECONDS,)).rowcount

    # -- the platform account (what GET /v1/account answers) ------------------------------------

    def _ensure_platform_account(self) -> None:
        """One stable platform account id per state file, minted on first use."""
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('platform_account', ?)",
                          (new_id("acct", 16),))
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('platform_created', ?)",
                          (str(self.now()),))

    def platform_account(self) -> tuple[str, int]:
        """The platform account's id and creation time."""
        return self._meta("platform_account", ""), int(self._meta("platform_created", "0"))

    # -- platform balance ----------------------------------------------------------------------

    def seed_balances(self, balances: dict[str, int]) -> None:
        """Starting balances apply only to currencies the state file does not know yet, so a
        restart with the same ``--balance`` options does not refill a drained balance."""
        for currency, amount in balances.items():
            self.conn.execute("INSERT OR IGNORE INTO balances (currency, available) VALUES (?, ?)",
                              (currency.lower(), int(amount)))

    def available(self, currency: str) -> int:
        row = self.conn.execute("SELECT available FROM balances WHERE currency = ?",
                                (currency,)).fetchone()
        return row[0] if row else 0

    def adjust_balance(self, currency: str, delta: int) -> int:
        self.conn.execute(
            "INSERT INTO balances (currency, available) VALUES (?, ?) "
            "ON CONFLICT (currency) DO UPDATE SET available = available + excluded.available",
            (currency, delta))
        return self.available(currency)

    def balances(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT currency, available FROM balances ORDER BY currency")
        return {c: a for c, a in rows}

    # -- objects (stored as the JSON Stripe would return, plus indexed filter columns) ---------

    def insert_account(self, obj: dict[str, Any]) -> None:
        self.conn.execute("INSERT INTO accounts (id, data) VALUES (?, ?)",
                          (obj["id"], json.dumps(obj)))

    def account(self, acct_id: str) -> tuple[dict[str, Any], bool] | None:
        """The account object and its sandbox-only ``invalid`` flag, or None."""
        row = self.conn.execute("SELECT data, invalid FROM accounts WHERE id = ?",
                                (acct_id,)).fetchone()
        return (json.loads(row[0]), bool(row[1])) if row else None

    def update_account(self, obj: dict[str, Any], invalid: bool) -> None:
        self.conn.execute("UPDATE accounts SET data = ?, invalid = ? WHERE id = ?",
                          (json.dumps(obj), int(invalid), obj["id"]))

    def insert_transfer(self, obj: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO transfers (id, destination, transfer_group, data) VALUES (?, ?, ?, ?)",
            (obj["id"], obj["destination"], obj["transfer_group"], json.dumps(obj)))

    def transfer(self, tr_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT data FROM transfers WHERE id = ?", (tr_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def update_transfer(self, obj: dict[str, Any]) -> None:
        self.conn.execute("UPDATE transfers SET data = ? WHERE id = ?",
                          (json.dumps(obj), obj["id"]))

    def insert_reversal(self, obj: dict[str, Any]) -> None:
        self.conn.execute("INSERT INTO reversals (id, transfer, data) VALUES (?, ?, ?)",
                          (obj["id"], obj["transfer"], json.dumps(obj)))

    def page(self, table: str, filters: dict[str, str | None], limit: int,
             starting_after: str | None, created: list[tuple[str, int]] = ()) -> tuple[list[dict[str, Any]], bool] | None:
        """Newest-first page of a table; None when ``starting_after`` names no such object.
        ``created``: Stripe's ``created`` range filter as (operator, unix time) pairs.

        Insertion order (``seq``) is the sort key rather than ``created``: many objects share a
        second, and Stripe's pages never skip or repeat an object.
        """
        allowed = _LISTABLE[table]
        where, args = [], []
        for operator, value in created:
            assert operator in ("=", ">", ">=", "<", "<="), operator
            where.append(f"json_extract(data, '$.created') {operator} ?")
            args.append(value)
        for column, value in filters.items():
            if value is not None:
                assert column in allowed, column
                where.append(f"{column} = ?")
                args.append(value)
        if starting_after is not None:
            row = self.conn.execute(f"SELECT seq FROM {table} WHERE id = ?",
                                    (starting_after,)).fetchone()
            if row is None:
                return None
            where.append("seq < ?")
            args.append(row[0])
        sql = f"SELECT data FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self.conn.execute(sql, (*args, limit + 1)).fetchall()
        return [json.loads(r[0]) for r in rows[:limit]], len(rows) > limit

    def count(self, table: str) -> int:
        assert table in _LISTABLE, table
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    # -- idempotency records -------------------------------------------------------------------

    def idempotency_record(self, key: str) -> dict[str, Any] | None:
        """The stored first response for ``key``, or None if never seen or older than 24 h."""
        row = self.conn.execute(
            "SELECT fingerprint, status, body, headers, request_id, created_at "
            "FROM idempotency WHERE key = ?", (key,)).fetchone()
        if row is None or self.now() - row[5] >= IDEMPOTENCY_TTL_SECONDS:
            return None  # an expired key behaves exactly like a new one
        return {"fingerprint": row[0], "status": row[1], "body": json.loads(row[2]),
                "headers": json.loads(row[3]), "request_id": row[4], "created_at": row[5]}

    def save_idempotency(self, key: str, fingerprint: str, status: int, body: Any,
                         headers: dict[str, str], request_id: str) -> None:
        now = self.now()
        # Prune what Stripe would have pruned; also frees the key if it was expired.
        self.prune_idempotency()
        self.conn.execute(
            "INSERT OR REPLACE INTO idempotency "
            "(key, fingerprint, status, body, headers, request_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, fingerprint, status, json.dumps(body), json.dumps(headers), request_id, now))

    def idempotency_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0]

    def reset(self, balances: dict[str, int]) -> None:
        """Forget everything (admin reset): objects, keys, clock; re-seed starting balances."""
        for table in ("meta", "balances", "accounts", "transfers", "reversals", "idempotency"):
            self.conn.execute(f"DELETE FROM {table}")
        self.seed_balances(balances)
        self._ensure_platform_account()  # a new state, a new platform account
