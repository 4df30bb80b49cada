"""The ledger-wide Stripe rate limiter (issue 11, point 5), on SQLite and PostgreSQL.

Properties, not speeds: no 1-second window holds more than the limit across processes and threads
sharing a paying account; N acquires cannot finish faster than the limit allows; another account is
not queued behind the first; the wait comes from the database's schedule (never more than the queue
ahead of it). Limits are small (20/s) so each test takes a few seconds."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.stripe_gateway.shared_rate_limit import SharedRateLimiter, slot_interval_us

LIMIT = 20
INTERVAL = slot_interval_us(LIMIT) / 1_000_000  # seconds between two slots of one account


def busiest_second(starts: list[float]) -> int:
    """The most starts inside any closed 1-second window [t - 1, t]."""
    starts, first, best = sorted(starts), 0, 0
    for last, t in enumerate(starts):
        while starts[first] < t - 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def _acquire_in_threads(limiter: SharedRateLimiter, threads: int, per_thread: int) -> list[float]:
    """Wall-clock instant at which each acquire let its request start, from `threads` threads."""
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(per_thread):
            limiter.acquire()
            now = time.time()
            with lock:
                starts.append(now)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return starts


def _process_main(url: str, account: str, threads: int, per_thread: int, barrier, results) -> None:
    """A separate OS process (spawned: nothing inherited) sharing the account through the ledger."""
    engine = create_ledger_engine(url)
    try:
        limiter = SharedRateLimiter(engine, account, LIMIT)
        barrier.wait(timeout=60)
        results.put(_acquire_in_threads(limiter, threads, per_thread))
    finally:
        engine.dispose()


def test_processes_and_threads_sharing_an_account_stay_under_its_limit(ledger_url):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    threads, per_thread = 3, 10
    processes = [
        context.Process(target=_process_main, args=(ledger_url, "acct_shared", threads, per_thread, barrier, results))
        for _ in range(2)
    ]
    for p in processes:
        p.start()
    try:
        per_process = [results.get(timeout=120) for _ in processes]
    finally:
        for p in processes:
            p.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0]
    starts = sorted(s for chunk in per_process for s in chunk)
    assert [len(chunk) for chunk in per_process] == [threads * per_thread] * 2
    # Both processes were sending at the same time (otherwise nothing was shared)...
    assert max(min(c) for c in per_process) < min(max(c) for c in per_process)
    # ...and together they never exceeded one account's limit in any second,
    assert busiest_second(starts) <= LIMIT
    # nor finished faster than the limit allows (two private buckets would take half the time).
    assert starts[-1] - starts[0] >= (len(starts) - 1) / LIMIT


def test_accounts_do_not_wait_on_each_other(engine):
    busy = SharedRateLimiter(engine, "acct_busy", LIMIT)
    quiet = SharedRateLimiter(engine, "acct_quiet", LIMIT)
    quiet.reserve()  # the quiet account's row exists: its first acquire below is an update, like the rest
    started = time.time()
    runs: dict[str, list[float]] = {}

    def run(name: str, limiter: SharedRateLimiter, threads: int, per_thread: int) -> None:
        runs[name] = _acquire_in_threads(limiter, threads, per_thread)

    workers = [
        threading.Thread(target=run, args=("busy", busy, 4, 10)),
        threading.Thread(target=run, args=("quiet", quiet, 1, 10)),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert busiest_second(runs["busy"]) <= LIMIT and busiest_second(runs["quiet"]) <= LIMIT
    # The quiet account's 10 requests need ~0.5 s of its own schedule; queued behind the busy
    # account's 40 (~2 s) they would finish after it.
    assert max(runs["quiet"]) - started < max(runs["busy"]) - started - 1.0
    # Together they exceed one account's limit: the two schedules really ran side by side.
    assert busiest_second(runs["busy"] + runs["quiet"]) > LIMIT


def _schedule(engine, account: str):
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT last_slot_us, next_slot_us, reserved_at_us, interval_us FROM stripe_rate_schedule "
            f"WHERE paying_account = '{account}'"
        ).one()


def test_the_wait_is_the_queue_ahead_on_the_database_clock(engine):
    limiter = SharedRateLimiter(engine, "acct_clock", LIMIT)
    began = time.monotonic()
    waits = [limiter.reserve() for _ in range(10)]  # reserved back to back, nobody sleeps
    elapsed = time.monotonic() - began
    assert waits[0] == 0.0  # a fresh account: its first slot is the database's now
    for k, wait in enumerate(waits):
        # k slots are queued ahead: never more than k intervals, and less only by the time that passed
        # (SQLite's clock has millisecond steps: one step of tolerance).
        assert k * INTERVAL - elapsed - 0.001 <= wait <= k * INTERVAL + 1e-9, (k, wait)
    last, following, reserved_at, interval = _schedule(engine, "acct_clock")
    assert interval == limiter.interval_us and following == last + interval
    assert waits[-1] == pytest.approx((last - reserved_at) / 1e6)  # the wait is slot - database now
    # No local time crosses the wire: a process with a skewed clock reserves exactly the same slots.
    assert set(limiter._statement.compile().params) == {"account", "interval_us"}


def test_concurrent_reservations_lose_no_slot(engine):
    limiter = SharedRateLimiter(engine, "acct_atomic", LIMIT)
    limiter.reserve()
    first_slot = _schedule(engine, "acct_atomic")[0]
    waits: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        for _ in range(10):
            wait = limiter.reserve()
            with lock:
                waits.append(wait)

    workers = [threading.Thread(target=reserve_many) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # 41 reservations, each exactly one interval after the previous: none lost, none doubled.
    assert _schedule(engine, "acct_atomic")[1] == first_slot + 41 * limiter.interval_us
    # The k-th shortest wait had at most k + 1 slots ahead of it (the first reservation included).
    for k, wait in enumerate(sorted(waits)):
        assert wait <= (k + 1) * INTERVAL + 1e-9, (k, wait)


def test_slot_spacing_keeps_limit_plus_one_slots_outside_a_closed_second():
    for limit in (1, 20, 25, 100, 20.5):
        interval_us = slot_interval_us(limit)
        allowed = int(limit)
        assert allowed * interval_us > 1_000_000  # allowed + 1 slots span more than one second
        assert 1_000_000 / interval_us >= 0.95 * allowed  # sustained throughput near the limit
    with pytest.raises(ValueError):
        slot_interval_us(20, margin_seconds=0)
