"""Execution benchmark: pay N items through the sandbox with Stripe-like latency and rate limits.

    python bench/bench_execution.py --items 5000 --latency-ms 150 --limits 25 100 --backend both

For each backend and rate limit it prints items/s achieved in the transfer phase and as a fraction of
the limit (target >= 0.95), the whole run including pre-flight, the sequential one-at-a-time figure,
and the ledger overhead per item (claim + record, no Stripe call; target <= 2 ms on PostgreSQL).
The client-side limiter runs at the limit; the sandbox enforces the same limit and answers 429 above it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_ledger

from sorae_payouts.core.periods import parse_period
from sorae_payouts.demo.operators import approve_with_generated_keys
from sorae_payouts.execution import attempts
from sorae_payouts.execution.identity import PaymentIdentity
from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch
from sorae_payouts.ledger import schema
from sorae_payouts.month_end.finalize import FinalizeError, finalize_programs
from sorae_payouts.month_end.manifest import ManifestError, PayoutPolicy
from sorae_payouts.month_end.manifest_build import build_manifests
from sorae_payouts.registry.programs import DEFAULT_PROGRAM
from sorae_payouts.stripe_gateway import Disposition, GatewayConfig, StripeGateway, TransferOutcome, TransferRecord
from sorae_sandbox import SandboxServer

KEY = "sk_test_bench"
PERIOD = parse_period("2026-10")
NOW = datetime(2026, 11, 25, tzinfo=UTC)
EARNED = datetime(2026, 10, 15, tzinfo=UTC)


def seed(engine, accounts: list[str]) -> None:
    """One affiliate, commission and payable item per account; finalized, built and approved."""
    with engine.begin() as conn:
        conn.execute(
            schema.affiliate.insert(),
            [
                {
                    "program_id": DEFAULT_PROGRAM,
                    "affiliate_id": f"aff_{i:05d}",
                    "name": "n",
                    "email": "e@x.test",
                    "stripe_account_id": a,
                    "currency": "usd",
                    "imported_at": NOW,
                }
                for i, a in enumerate(accounts)
            ],
        )
        conn.execute(
            schema.commission.insert(),
            [
                {
                    "program_id": DEFAULT_PROGRAM,
                    "commission_id": f"c{i}",
                    "affiliate_id": f"aff_{i:05d}",
                    "order_id": f"o{i}",
                    "amount_minor": 5_000 + i,
                    "currency": "usd",
                    "earned_at": EARNED,
                    "period": PERIOD,
                    "imported_at": NOW,
                }
                for i in range(len(accounts))
            ],
        )
    finalize_programs(engine, PERIOD, [DEFAULT_PROGRAM], now=NOW, holding_days=3).one(DEFAULT_PROGRAM, FinalizeError)
    build_manifests(engine, PERIOD, [DEFAULT_PROGRAM], policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW).one(
        DEFAULT_PROGRAM, ManifestError
    )
    approve_with_generated_keys(engine, PERIOD, program_id=DEFAULT_PROGRAM, now=NOW)  # signed, as operators do


def make_accounts(state: Path, n: int) -> list[str]:
    with SandboxServer(port=0, state_path=state, balances={"usd": 10**13}) as sandbox:
        client = stripe.StripeClient(KEY, base_addresses={"api": sandbox.url}, max_network_retries=0)
        return [
            client.v1.accounts.create(
                params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
            ).id
            for _ in range(n)
        ]


def pay(url_engine, state: Path, accounts, latency_ms: int, limit: float, workers: int) -> dict:
    engine = url_engine
    done: list[float] = []
    lock = threading.Lock()

    def tick():
        with lock:
            done.append(time.perf_counter())

    with SandboxServer(port=0, state_path=state, latency_ms=latency_ms, rate_limit=limit) as sandbox:
        gateway = StripeGateway(GatewayConfig(KEY, sandbox.url, max_network_retries=2, rate_limit_per_second=limit))
        started = time.perf_counter()
        report = execute_batch(engine, gateway, PERIOD, settings=ExecutionSettings(workers=workers), on_item_done=tick)
        wall = time.perf_counter() - started
        stats = sandbox.admin("GET", "/_sandbox/stats")
    posted = report.outcome.count("posted")
    phase = (done[-1] - done[0]) if len(done) > 1 else wall
    per_second = (len(done) - 1) / phase if phase > 0 else 0.0
    counts = gateway.request_counts
    # Requests a run makes besides the transfers: the paying account (1), the group scan (1 page per 100
    # transfers already in the group), readiness and balance. All pass the same client-side limiter.
    extra = {
        "group_list": report.group_list_requests,
        "account": counts["account.retrieve_current"],
        "other": sum(counts.values())
        - counts["transfers.create"]
        - counts["account.retrieve_current"]
        - report.group_list_requests,
    }
    return {
        "posted": posted,
        "wall": wall,
        "phase_items_per_s": per_second,
        "rate_limited": stats["rate_limited"],
        "sent": report.sent,
        "extra": extra,
    }


def ledger_overhead(engine, n: int) -> float:
    """ms per item for claim + record alone (what the ledger adds to each Stripe call)."""
    with engine.connect() as conn:
        items = attempts.work_items(conn, "payout_2026-10")[:n]
    started = time.perf_counter()
    for item in items:
        identity = PaymentIdentity(DEFAULT_PROGRAM, "2026-10", item.affiliate_id, item.currency)
        attempt = attempts.claim(engine, item, paying_account="acct_benchplatform", identity=identity, now=NOW)
        record = TransferRecord(
            f"tr_bench{item.payout_item_id}", item.amount_minor, item.currency, item.destination, "payout_2026-10", {}
        )
        attempts.record(engine, attempt, TransferOutcome(Disposition.POSTED, record, "req_bench"), now=NOW)
    return (time.perf_counter() - started) * 1000 / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--limits", type=float, nargs="+", default=[25, 100])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--sequential-items", type=int, default=100)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"execution benchmark: {args.items} items, sandbox latency {args.latency_ms} ms, workers {args.workers}")
    print(
        "| backend | run | items | wall s | items/s (transfer phase) | fraction of limit | 429s met | "
        "other requests (group list / account / readiness+balance) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for backend in backends:
            for limit in args.limits:
                state = work / f"sandbox_{backend}_{int(limit)}.sqlite3"
                accounts = make_accounts(state, args.items)
                with scratch_ledger(backend, work) as (_, engine):
                    seed(engine, accounts)
                    r = pay(engine, state, accounts, args.latency_ms, limit, args.workers)
                e = r["extra"]
                print(
                    f"| {backend} | limit {limit:g}/s | {r['posted']} | {r['wall']:.1f} | "
                    f"{r['phase_items_per_s']:.1f} | {r['phase_items_per_s'] / limit:.3f} | {r['rate_limited']} | "
                    f"{e['group_list']} / {e['account']} / {e['other']} |",
                    flush=True,
                )
            state = work / f"sandbox_{backend}_seq.sqlite3"
            accounts = make_accounts(state, args.sequential_items)
            with scratch_ledger(backend, work) as (_, engine):
                seed(engine, accounts)
                r = pay(engine, state, accounts, args.latency_ms, max(args.limits), 1)
            print(
                f"| {backend} | sequential (1 worker) | {r['posted']} | {r['wall']:.1f} | "
                f"{r['phase_items_per_s']:.1f} | {r['phase_items_per_s'] / max(args.limits):.3f} | "
                f"{r['rate_limited']} | {r['extra']['group_list']} / {r['extra']['account']} / "
                f"{r['extra']['other']} |",
                flush=True,
            )
            with scratch_ledger(backend, work) as (_, engine):
                seed(engine, [f"acct_overhead{i}" for i in range(2_000)])
                ms = ledger_overhead(engine, 2_000)
            print(f"| {backend} | ledger overhead, claim + record | 2000 | | | {ms:.2f} ms/item | | |", flush=True)


if __name__ == "__main__":
    main()
