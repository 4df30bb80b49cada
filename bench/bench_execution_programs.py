"""Execution across programs and paying accounts, PostgreSQL, sandbox with Stripe-like latency and limits.

    python bench/bench_execution_programs.py --programs 100 --items 200 --accounts 1 --limit 50 --processes 4
    python bench/bench_execution_programs.py --programs 100 --items 200 --accounts 4 --limit 50 --processes 8

`--accounts 1`: every program pays from the platform account, funded by its own Stripe charge (so each
transfer names its charge as `source_transaction`). `--accounts N > 1`: the programs are spread over N
merchant platform accounts (each program's key is `env:SORAE_BENCH_KEY_<n>`). The programs' batches
are executed by `--processes` OS processes (as separate Dagster runs would), each taking programs one
after the other; every gateway uses the ledger's shared limiter of its paying account at `--limit`/s,
and the sandbox enforces the same limit per platform (429 above it).

Printed per paying account, over the execution phase (first to last transfer): requests/s received by
the sandbox and as a fraction of the limit (all requests count against Stripe's limit: transfers,
readiness checks, balance, group scans), transfers/s, the busiest sliding 1-second window at the
sandbox (must not exceed the limit) and the 429s met (must be 0).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_ledger

from sorae_payouts.core.periods import parse_period
from sorae_payouts.ledger import schema
from sorae_sandbox import SandboxServer

PLATFORM_KEY = "sk_test_bench_platform"
PERIOD = parse_period("2026-10")
NOW = datetime(2026, 11, 25, tzinfo=UTC)
EARNED = datetime(2026, 10, 15, tzinfo=UTC)
AMOUNT = 5_000


def merchant_key(n: int) -> str:
    return f"sk_test_bench_merchant_{n}"


def program_ids(n: int) -> list[str]:
    return [f"p{i:04d}" for i in range(n)]


def account_of(program_index: int, accounts: int) -> int:
    return program_index % accounts


def create_world(state: Path, args) -> dict:
    """Platforms, connected accounts (one per item) and, on the shared platform, one charge per program."""
    keys = [PLATFORM_KEY] if args.accounts == 1 else [merchant_key(n) for n in range(args.accounts)]
    world = {"keys": keys, "destinations": {}, "charges": {}}
    big = {"usd": 10**13}
    with SandboxServer(port=0, state_path=state, balances=big, api_keys=[PLATFORM_KEY]) as sandbox:
        for key in keys:
            if key != PLATFORM_KEY:
                sandbox.add_platform(key, big)
        clients = [stripe.StripeClient(k, base_addresses={"api": sandbox.url}, max_network_retries=0) for k in keys]
        from concurrent.futures import ThreadPoolExecutor

        def make(pair):
            index, program = pair
            client = clients[account_of(index, args.accounts)]
            made = [
                client.v1.accounts.create(
                    params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
                ).id
                for _ in range(args.items)
            ]
            charge = None
            if args.accounts == 1:
                total = sum(AMOUNT + i for i in range(args.items))
                charge = client.v1.charges.create(
                    params={"amount": total, "currency": "usd", "source": "tok_bypassPending"}
                ).id
            return program, made, charge

        with ThreadPoolExecutor(8) as pool:
            for program, made, charge in pool.map(make, enumerate(program_ids(args.programs))):
                world["destinations"][program] = made
                world["charges"][program] = charge
    return world


def seed_ledger(engine, world: dict, args) -> None:
    from sorae_payouts.demo.operators import approve_with_generated_keys
    from sorae_payouts.month_end.finalize import FinalizeError, finalize_programs
    from sorae_payouts.month_end.manifest import ManifestError, PayoutPolicy
    from sorae_payouts.month_end.manifest_build import build_manifests
    from sorae_payouts.registry.programs import add_program

    for index, program in enumerate(program_ids(args.programs)):
        ref = None if args.accounts == 1 else f"env:SORAE_BENCH_KEY_{account_of(index, args.accounts)}"
        add_program(engine, program, name=f"Merchant {program}", paying_account_ref=ref, added_by="bench", now=NOW)
        with engine.begin() as conn:
            conn.execute(
                schema.affiliate.insert(),
                [
                    {
                        "program_id": program,
                        "affiliate_id": f"aff_{i:05d}",
                        "name": "n",
                        "email": "e@x.test",
                        "stripe_account_id": a,
                        "currency": "usd",
                        "imported_at": NOW,
                    }
                    for i, a in enumerate(world["destinations"][program])
                ],
            )
            conn.execute(
                schema.commission.insert(),
                [
                    {
                        "program_id": program,
                        "commission_id": f"c{i}",
                        "affiliate_id": f"aff_{i:05d}",
                        "order_id": f"o{i}",
                        "amount_minor": AMOUNT + i,
                        "currency": "usd",
                        "earned_at": EARNED,
                        "period": PERIOD,
                        "imported_at": NOW,
                    }
                    for i in range(args.items)
                ],
            )
        finalize_programs(engine, PERIOD, [program], now=NOW, holding_days=3).one(program, FinalizeError)
        build_manifests(
            engine, PERIOD, [program], policy=PayoutPolicy.from_major({"usd": "1.00"}, {"usd": "100000000"}), now=NOW
        ).one(program, ManifestError)
        approve_with_generated_keys(engine, PERIOD, program_id=program, now=NOW)  # signed, as operators do


def record_charges(engine, world: dict, api_base: str) -> None:
    from sorae_payouts.registry.funding import record_funding
    from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway

    gateway = StripeGateway(GatewayConfig(PLATFORM_KEY, api_base, rate_limit_per_second=10_000))
    for program, charge in world["charges"].items():
        record_funding(engine, gateway, program, charge_id=charge, recorded_by="bench", now=NOW)


class RecordingLimiter:
    """The shared limiter, noting when each acquire returned (monotonic: one clock for every process on
    Linux), so the report can tell the limiter's spacing from the delays after it."""

    def __init__(self, inner, sent: list[float]):
        self.inner, self.sent, self.paying_account = inner, sent, inner.paying_account

    def acquire(self) -> None:
        self.inner.acquire()
        self.sent.append(time.monotonic())


class GcPauses:
    """The longest garbage-collection pause per generation in this process (a pause stops every thread,
    so requests whose slot fell in it leave late, together)."""

    def __init__(self):
        import gc

        self.longest = {0: 0.0, 1: 0.0, 2: 0.0}
        self.count2 = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.longest[generation] = max(self.longest[generation], time.perf_counter() - self._started)
        self.count2 += generation == 2

    def summary(self) -> str:
        return (
            f"longest GC pause ms: gen0 {self.longest[0] * 1e3:.1f}, gen1 {self.longest[1] * 1e3:.1f}, "
            f"gen2 {self.longest[2] * 1e3:.1f} ({self.count2} full collections)"
        )


def peak_in_1s(stamps: list[float]) -> int:
    peak, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamps[start] <= stamp - 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def worker(url: str, api_base: str, programs: list[str], limit: float, threads: int, queue, ready) -> None:
    """One OS process: execute its programs' batches one after the other (as one run each would)."""
    from sorae_payouts.core.heap import freeze_startup_heap
    from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch
    from sorae_payouts.ledger.database import create_ledger_engine
    from sorae_payouts.registry.paying_accounts import program_gateway
    from sorae_payouts.registry.programs import get_program
    from sorae_payouts.stripe_gateway import GatewayConfig
    from sorae_payouts.stripe_gateway.shared_rate_limit import SharedRateLimiter

    engine = create_ledger_engine(url)
    freeze_startup_heap()  # as the Dagster step does before paying
    pauses = GcPauses()
    ready.wait()  # every process imported and connected: start together (start-up is not execution)
    base = GatewayConfig(PLATFORM_KEY, api_base, max_network_retries=2, rate_limit_per_second=limit)
    stamps: list[float] = []
    sent: list[float] = []
    posted = refused = missed = 0
    gateways: dict[str, object] = {}  # one per paying account and process, as StripeResource keeps them
    for program_id in programs:
        with engine.connect() as conn:
            program = get_program(conn, program_id)
        ref = program.paying_account_ref or "platform"
        if ref not in gateways:
            account = program_gateway(base, program).paying_account()
            limiter = RecordingLimiter(SharedRateLimiter(engine, account, limit), sent)
            gateways[ref] = program_gateway(base, program, limiter)
        gateway = gateways[ref]
        try:
            report = execute_batch(
                engine,
                gateway,
                PERIOD,
                program_id=program_id,
                settings=ExecutionSettings(workers=threads),
                on_item_done=lambda: stamps.append(time.time()),
            )
            posted += report.outcome.count("posted")
        except Exception as exc:
            refused += 1
            print(f"program {program_id} refused: {exc}", file=sys.stderr)
    missed = sum(g.limiter.inner.missed_slots for g in gateways.values())
    engine.dispose()
    queue.put(
        {"stamps": stamps, "posted": posted, "refused": refused, "sent": sent, "missed": missed, "gc": pauses.summary()}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--limit", type=float, default=50)
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=12, help="executor workers per process")
    args = parser.parse_args()
    for n in range(args.accounts):
        os.environ[f"SORAE_BENCH_KEY_{n}"] = merchant_key(n)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "sandbox.sqlite3"
        started = time.perf_counter()
        world = create_world(state, args)
        print(
            f"sandbox world: {args.programs} programs x {args.items} accounts in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        with scratch_ledger("postgres", Path(tmp)) as (url, engine):
            started = time.perf_counter()
            seed_ledger(engine, world, args)
            print(f"ledger: programs closed, built, approved in {time.perf_counter() - started:.0f} s", flush=True)
            if args.accounts == 1:
                with SandboxServer(port=0, state_path=state, api_keys=[PLATFORM_KEY]) as sandbox:
                    record_charges(engine, world, sandbox.url)
            with SandboxServer(
                port=0, state_path=state, latency_ms=args.latency_ms, rate_limit=args.limit, api_keys=[PLATFORM_KEY]
            ) as sandbox:
                before = sandbox.admin("GET", "/_sandbox/stats")
                programs = program_ids(args.programs)
                shares = [programs[i :: args.processes] for i in range(args.processes)]
                context = mp.get_context("spawn")
                queue = context.Queue()
                ready = context.Barrier(sum(1 for share in shares if share) + 1)
                procs = [
                    context.Process(
                        target=worker, args=(url, sandbox.url, share, args.limit, args.threads, queue, ready)
                    )
                    for share in shares
                    if share
                ]
                for p in procs:
                    p.start()
                from sorae_payouts.core.heap import freeze_startup_heap

                freeze_startup_heap()  # as `sorae-payouts sandbox` does: the sandbox serves from this process
                sandbox_pauses = GcPauses()
                ready.wait()
                t0 = time.time()
                results = [queue.get() for _ in procs]
                for p in procs:
                    p.join()
                wall = time.time() - t0
                after = sandbox.admin("GET", "/_sandbox/stats")
        report(args, world, results, before, after, wall)
        print(f"sandbox process: {sandbox_pauses.summary()}")
        for n, result in enumerate(results):
            print(f"worker {n}: {result['gc']}")


def report(args, world, results, before, after, wall) -> None:
    stamps = sorted(s for r in results for s in r["stamps"])
    phase = stamps[-1] - stamps[0] if len(stamps) > 1 else wall
    posted, refused = sum(r["posted"] for r in results), sum(r["refused"] for r in results)
    print(
        f"\nexecution: {posted} posted, {refused} programs refused, {len(stamps)} transfers in {phase:.1f} s "
        f"(wall {wall:.1f} s from the processes' common start); limit {args.limit:g}/s per account, latency "
        f"{args.latency_ms} ms"
    )
    print("| paying account | requests | busy s | requests/s | fraction of limit | transfers/s | busiest 1 s | 429s |")
    print("|---|---|---|---|---|---|---|---|")
    total = 0.0
    for platform, stats in sorted(after["platforms"].items()):
        requests = stats["v1_requests"] - before["platforms"].get(platform, {}).get("v1_requests", 0)
        if requests <= 0:
            continue
        limited = stats["rate_limited"] - before["platforms"].get(platform, {}).get("rate_limited", 0)
        busy = stats["last_request_s"] - stats["first_request_s"]  # first to last request of this account
        per_second = (requests - 1) / busy if busy > 0 else 0.0
        total += per_second
        transfers = posted / args.accounts / busy if busy > 0 else 0.0
        print(
            f"| {platform} | {requests} | {busy:.1f} | {per_second:.1f} | {per_second / args.limit:.3f} | "
            f"{transfers:.1f} | {stats['peak_requests_in_1s']} | {limited} |"
        )
    if args.accounts == 1:  # the limiter's own spacing, before HTTP, the sandbox's parsing and threads
        sent = sorted(s for r in results for s in r["sent"])
        print(
            f"\nclient side: busiest 1 s between acquire returning = {peak_in_1s(sent)} ({len(sent)} acquires, "
            f"{sum(r['missed'] for r in results)} slots abandoned by late wake-ups)"
        )
    print(
        f"\nall accounts: {total:.1f} requests/s = {total / (args.limit * args.accounts):.3f} x "
        f"{args.accounts} x limit; transfers {posted / phase:.1f}/s",
        flush=True,
    )


if __name__ == "__main__":
    main()
