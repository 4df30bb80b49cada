"""Persistent state of the sandbox: one SQLite file (the ``--state FILE``).

It holds what Stripe holds that the payout engine can observe, for each platform account the
sandbox serves (one per API key, see ``platforms.py``): its connected accounts, transfers and their
reversals, charges and top-ups, its balance per currency, its idempotency records (stored responses
keyed by platform and ``Idempotency-Key``), and the sandbox clock they all share. Every row of a
platform's objects carries the platform's account id, and every query filters on it: another
platform's objects are invisible, as on Stripe.

Because a restarted sandbox opens the same file, a payout run that "crashed" against it finds the
same transfers and the same idempotency records, which is what the engine's recovery relies on.
A state file written before platforms existed is migrated in place: everything in it belongs to
the default platform (``_migrate_single_platform``).

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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .balances import BalanceMixin
from .idempotency import IdempotencyMixin
from .platforms import PlatformMixin

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS platforms (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, created INTEGER NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS platform_keys (
    key_hash TEXT PRIMARY KEY, platform TEXT NOT NULL, masked TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS balances (
    platform TEXT NOT NULL, currency TEXT NOT NULL, available INTEGER NOT NULL,
    PRIMARY KEY (platform, currency));
CREATE TABLE IF NOT EXISTS accounts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, platform TEXT NOT NULL,
    invalid INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS accounts_platform ON accounts (platform, seq);
CREATE TABLE IF NOT EXISTS transfers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, platform TEXT NOT NULL,
    destination TEXT NOT NULL, transfer_group TEXT, source_transaction TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS transfers_platform ON transfers (platform, seq);
CREATE INDEX IF NOT EXISTS transfers_destination ON transfers (destination, seq);
CREATE INDEX IF NOT EXISTS transfers_group ON transfers (transfer_group, seq);
CREATE INDEX IF NOT EXISTS transfers_source ON transfers (source_transaction, seq);
CREATE TABLE IF NOT EXISTS reversals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    transfer TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reversals_transfer ON reversals (transfer, seq);
CREATE TABLE IF NOT EXISTS charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, platform TEXT NOT NULL,
    currency TEXT NOT NULL, amount INTEGER NOT NULL, transferred INTEGER NOT NULL DEFAULT 0,
    available_on INTEGER NOT NULL, settled INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS charges_platform ON charges (platform, seq);
CREATE TABLE IF NOT EXISTS topups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, platform TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS topups_platform ON topups (platform, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    platform TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    body TEXT NOT NULL, headers TEXT NOT NULL, request_id TEXT NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (platform, key));
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
"""

# Tables and filter columns the generic list query may touch (never user-chosen identifiers).
_LISTABLE = {
    "accounts": ("platform",),
    "transfers": ("platform", "destination", "transfer_group", "source_transaction"),
    "reversals": ("transfer",),
    "charges": ("platform",),
    "topups": ("platform",),
}
_TABLES = (
    "meta",
    "platforms",
    "platform_keys",
    "balances",
    "accounts",
    "transfers",
    "reversals",
    "charges",
    "topups",
    "idempotency",
)


class Store(PlatformMixin, BalanceMixin, IdempotencyMixin):
    """SQLite-backed state. Callers hold ``reading()`` or ``transaction()`` around every call."""

    def __init__(self, path: str):
        self.path = path
        # One shared connection: the lock below, not SQLite's thread check, serializes use.
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()
        self._key_index: dict[str, str] = {}  # key hash -> platform id (see PlatformMixin)
        self._keys_changed = False  # register_key() ran in the current transaction
        with self.transaction():
            self._migrate_single_platform()
            self._create_schema()
            self.ensure_default_platform()
        self.load_key_index()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def reading(self) -> Iterator[Store]:
        with self._lock:
            yield self

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Serialize on the lock and run one SQLite transaction: all of it commits or none."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.conn.execute("ROLLBACK")
                if self._keys_changed:
                    self.load_key_index()  # forget keys registered by the rolled-back work
                raise
            self.conn.execute("COMMIT")
            self._keys_changed = False

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

    def _create_schema(self) -> None:
        # Statement by statement: executescript() would COMMIT the surrounding transaction.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}

    def _migrate_single_platform(self) -> None:
        """A state file from before platforms (no ``platform`` columns): give every object, balance
        and idempotency key to the platform the file already had (``meta.platform_account``)."""
        if not self._columns("balances") or "platform" in self._columns("balances"):
            return  # a new file, or already migrated
        default = self.default_platform_id_from_meta()
        for table in ("accounts", "transfers"):
            self.conn.execute(f"ALTER TABLE {table} ADD COLUMN platform TEXT NOT NULL DEFAULT ''")
            self.conn.execute(f"UPDATE {table} SET platform = ?", (default,))
        self.conn.execute("ALTER TABLE transfers ADD COLUMN source_transaction TEXT")
        # Primary keys change (platform joins them): rebuild those two tables.
        self.conn.execute("ALTER TABLE balances RENAME TO balances_single")
        self.conn.execute("ALTER TABLE idempotency RENAME TO idempotency_single")
        self.conn.execute("DROP INDEX IF EXISTS idempotency_created")
        self._create_schema()
        self.conn.execute("INSERT INTO balances SELECT ?, currency, available FROM balances_single", (default,))
        self.conn.execute(
            "INSERT INTO idempotency SELECT ?, key, fingerprint, status, body, headers, "
            "request_id, created_at FROM idempotency_single",
            (default,),
        )
        self.conn.execute("DROP TABLE balances_single")
        self.conn.execute("DROP TABLE idempotency_single")

    # -- sandbox clock -------------------------------------------------------------------------
    # Stored as an offset from real time so it keeps ticking, survives restarts, and can only be
    # moved forward (idempotency expiry, charge availability and `created` ordering assume time
    # never goes back).

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

    # -- objects (stored as the JSON Stripe would return, plus indexed filter columns) ---------

    def insert_account(self, platform: str, obj: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO accounts (id, platform, data) VALUES (?, ?, ?)", (obj["id"], platform, json.dumps(obj))
        )

    def account(self, platform: str | None, acct_id: str) -> tuple[dict[str, Any], bool] | None:
        """The account object and its sandbox-only ``invalid`` flag, or None when it does not exist
        or is connected to another platform (``platform=None``: any platform, for the admin path)."""
        row = self.conn.execute("SELECT data, invalid, platform FROM accounts WHERE id = ?", (acct_id,)).fetchone()
        if row is None or (platform is not None and row[2] != platform):
            return None
        return json.loads(row[0]), bool(row[1])

    def update_account(self, obj: dict[str, Any], invalid: bool) -> None:
        self.conn.execute(
            "UPDATE accounts SET data = ?, invalid = ? WHERE id = ?", (json.dumps(obj), int(invalid), obj["id"])
        )

    def insert_transfer(self, platform: str, obj: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO transfers (id, platform, destination, transfer_group, source_transaction, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                obj["id"],
                platform,
                obj["destination"],
                obj["transfer_group"],
                obj["source_transaction"],
                json.dumps(obj),
            ),
        )

    def transfer(self, platform: str, tr_id: str) -> dict[str, Any] | None:
        return self._object("transfers", platform, tr_id)

    def update_transfer(self, obj: dict[str, Any]) -> None:
        self.conn.execute("UPDATE transfers SET data = ? WHERE id = ?", (json.dumps(obj), obj["id"]))

    def insert_reversal(self, obj: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO reversals (id, transfer, data) VALUES (?, ?, ?)", (obj["id"], obj["transfer"], json.dumps(obj))
        )

    def insert_topup(self, platform: str, obj: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO topups (id, platform, data) VALUES (?, ?, ?)", (obj["id"], platform, json.dumps(obj))
        )

    def topup(self, platform: str, tu_id: str) -> dict[str, Any] | None:
        return self._object("topups", platform, tu_id)

    def _object(self, table: str, platform: str, obj_id: str) -> dict[str, Any] | None:
        assert table in _LISTABLE, table
        row = self.conn.execute(
            f"SELECT data FROM {table} WHERE id = ? AND platform = ?", (obj_id, platform)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def page(
        self,
        table: str,
        filters: dict[str, str | None],
        limit: int,
        starting_after: str | None,
        created: list[tuple[str, int]] = (),
    ) -> tuple[list[dict[str, Any]], bool] | None:
        """Newest-first page of a table; None when ``starting_after`` names no such object (of the
        same platform). ``created``: Stripe's ``created`` range filter as (operator, unix time) pairs.

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
            scope = " AND platform = ?" if filters.get("platform") else ""
            row = self.conn.execute(
                f"SELECT seq FROM {table} WHERE id = ?{scope}",
                (starting_after, *([filters["platform"]] if scope else [])),
            ).fetchone()
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

    def count(self, table: str, platform: str | None = None) -> int:
        assert table in _LISTABLE, table
        if platform is None or "platform" not in _LISTABLE[table]:
            return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE platform = ?", (platform,)).fetchone()[0]

    def reset(self) -> None:
        """Forget everything (admin reset): platforms and their keys, objects, balances, idempotency
        keys, clock; a new default platform account (the caller seeds it again)."""
        for table in _TABLES:
            self.conn.execute(f"DELETE FROM {table}")
        self.ensure_default_platform()  # a new state, a new platform account
        self.load_key_index()
