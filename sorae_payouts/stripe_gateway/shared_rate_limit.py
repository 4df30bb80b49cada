"""A rate limiter shared by every process that pays from one Stripe account, kept in the ledger database.

Stripe's limits belong to the paying (platform) account, not to a process: two runs paying from the same
account must share one budget, and runs on different accounts must not wait on each other. The
in-process `TokenBucket` cannot see other processes, so each paying account has one row in
`stripe_rate_schedule` holding the next free request slot on the DATABASE's clock.

One acquire = one short transaction of its own (its own pooled connection, never a caller's
transaction) running ONE upsert that reserves the next slot:

    slot = max(stored next slot, database now);  stored next slot = slot + interval
    returns slot - database now  (how long to sleep)

The row lock (PostgreSQL) or the write lock of BEGIN IMMEDIATE (SQLite, held for that one statement)
makes the reservation atomic across processes; accounts are different rows, so on PostgreSQL they never
contend. Only the wait crosses the wire, never a time: a process whose clock is off by minutes still
spaces its requests correctly, because it sleeps a duration measured on the database's clock.

Why the spacing is a little wider than 1/limit: slots 1/limit apart put limit + 1 starts into a closed
1-second window. Slots here are `(1 + margin) / limit` apart (margin 0.03 s by default), so limit + 1
consecutive slots span at least 1 + margin seconds and any 1-second window holds at most `limit` slots.
A request starts at its slot plus a local delay (the answer's trip back, the commit, sleep overshoot,
a thread the OS did not run in time). `acquire` returns only if that delay is at most margin / 2;
a later wake-up abandons the slot (unused slots are harmless) and reserves a new one. So limit + 1
starts span at least 1 + margin / 2 seconds: at most `limit` in any 1-second window, with margin / 2
left for what happens between `acquire` returning and the request leaving. Throughput under sustained
demand is limit / (1 + margin): 0.971 x limit with the default, less any abandoned slots.
"""

from __future__ import annotations

import math
import threading
import time

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused

DEFAULT_MARGIN_SECONDS = 0.03
# After this many abandoned slots in a row (a process the OS keeps starving), take the late slot rather
# than burn the account's budget or hang: the one case where a start may be later than margin / 2.
MAX_MISSED_SLOTS = 10

_CLOCK_US = {
    # clock_timestamp(), not now(): now() is the transaction's start; the slot must be taken at the
    # moment the row is locked. Evaluated once per sub-select below.
    "postgresql": "CAST(floor(extract(epoch FROM clock_timestamp()) * 1000000) AS BIGINT)",
    # SQLite's 'now' is milliseconds, fixed for the whole statement; rounding to the millisecond undoes
    # the julian-day float arithmetic exactly.
    "sqlite": "(CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000)",
}
_GREATEST = {"postgresql": "GREATEST", "sqlite": "max"}

# One statement, two branches: the first request of an account inserts its row (slot = now); every
# later one updates it under the row's lock. The sub-select reads the clock once per row, after the
# lock is held (a stale clock read before a lock wait would only make the wait longer, never shorter).
# `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join.
_RESERVE = """
INSERT INTO stripe_rate_schedule AS s (paying_account, last_slot_us, next_slot_us, reserved_at_us, interval_us)
SELECT :account, c.now_us, c.now_us + :interval_us, c.now_us, :interval_us FROM (SELECT {clock} AS now_us) AS c
WHERE true
ON CONFLICT (paying_account) DO UPDATE SET (last_slot_us, next_slot_us, reserved_at_us, interval_us) = (
    SELECT {greatest}(s.next_slot_us, c.now_us), {greatest}(s.next_slot_us, c.now_us) + :interval_us,
           c.now_us, :interval_us
    FROM (SELECT {clock} AS now_us) AS c)
RETURNING last_slot_us - reserved_at_us
"""


class SharedRateLimiterError(PayoutRefused):
    """The schedule could not be reserved; the message says why and what to check."""


def slot_interval_us(requests_per_second: float, margin_seconds: float = DEFAULT_MARGIN_SECONDS) -> int:
    """Microseconds between two slots of one account: any closed 1-second window then holds at most
    floor(limit) slots (at most one for a limit below 1/s, at most one per 1/limit seconds)."""
    if requests_per_second <= 0:
        raise ValueError("requests_per_second must be positive")
    if margin_seconds <= 0:
        raise ValueError("margin_seconds must be positive: without it limit + 1 slots fit in a closed second")
    # A fractional limit cannot be met by a count: 20.5/s means at most 20 starts in any second.
    per_window = math.floor(requests_per_second) if requests_per_second >= 1 else requests_per_second
    return math.ceil((1 + margin_seconds) * 1_000_000 / per_window)


class SharedRateLimiter:
    """`acquire()` blocks until this request may start under `paying_account`'s limit, counting every
    process and thread that uses the same ledger database and account. Same interface as `TokenBucket`,
    so `StripeGateway(config, limiter=SharedRateLimiter(engine, "acct_...", 25))` plugs it in."""

    def __init__(
        self,
        engine: sa.Engine,
        paying_account: str,
        requests_per_second: float,
        *,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
    ):
        if not paying_account:
            raise ValueError("paying_account is required: the Stripe account id (acct_...) whose limit this is")
        dialect = engine.dialect.name
        if dialect not in _CLOCK_US:
            raise SharedRateLimiterError(f"no shared rate schedule on {dialect}: PostgreSQL or SQLite only")
        # PostgreSQL: autocommit, so the one statement is the whole transaction (saves the BEGIN round
        # trip, ~0.2 ms). Not on SQLite: there the engine's BEGIN IMMEDIATE is what takes the write lock.
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT") if dialect == "postgresql" else engine
        self.paying_account = paying_account
        self.requests_per_second = float(requests_per_second)
        self.interval_us = slot_interval_us(requests_per_second, margin_seconds)
        self.tolerance_seconds = margin_seconds / 2
        self.missed_slots = 0  # slots abandoned because this process woke too late (what a report may show)
        self._missed_lock = threading.Lock()
        self._fastest_round_trip = float("inf")
        self._statement = sa.text(_RESERVE.format(clock=_CLOCK_US[dialect], greatest=_GREATEST[dialect]))

    def __repr__(self) -> str:
        return (
            f"SharedRateLimiter(paying_account={self.paying_account!r}, "
            f"requests_per_second={self.requests_per_second}, interval_us={self.interval_us})"
        )

    def reserve(self) -> float:
        """Reserve the account's next slot; seconds until it, on the database's clock (0 or more)."""
        return self._reserve()[0]

    def acquire(self) -> None:
        """Block until one request may be sent: its reserved slot has come, and not more than
        `tolerance_seconds` ago."""
        for _ in range(MAX_MISSED_SLOTS):
            wait, sent, answered = self._reserve()
            round_trip = answered - sent
            self._fastest_round_trip = min(self._fastest_round_trip, round_trip)
            # Local monotonic time: the slot came no earlier than `earliest` (the database read its clock
            # after our statement travelled to it, about half the fastest round trip) and no later than
            # answered + wait. Sleep to the later bound, then judge lateness from the earlier one.
            earliest = sent + self._fastest_round_trip / 2 + wait
            pause = answered + wait - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if time.monotonic() - earliest <= self.tolerance_seconds:
                return
            with self._missed_lock:
                self.missed_slots += 1
        # Starved MAX_MISSED_SLOTS times in a row: go now (documented in MAX_MISSED_SLOTS).

    def _reserve(self) -> tuple[float, float, float]:
        """(seconds to wait, local monotonic instant the statement was sent, instant it was answered)."""
        try:
            with self.engine.begin() as conn:  # its own connection and transaction, committed at once
                sent = time.monotonic()  # after BEGIN (IMMEDIATE on SQLite): lock waits are not lateness
                wait_us = conn.execute(
                    self._statement, {"account": self.paying_account, "interval_us": self.interval_us}
                ).scalar_one()
                answered = time.monotonic()
        except sa.exc.OperationalError as exc:
            if self.engine.dialect.name == "sqlite" and "locked" in str(exc):
                raise SharedRateLimiterError(
                    "the SQLite ledger's write lock stayed taken past the busy timeout: a ledger transaction "
                    "open in this same thread while calling Stripe would do that (SQLite ledger "
                    "transactions are BEGIN IMMEDIATE); close it before the Stripe call"
                ) from exc
            raise
        return max(0, int(wait_us)) / 1_000_000, sent, answered
