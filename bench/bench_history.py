"""One affiliate's payout history (the portal's read of `affiliate_payout_history`) at scale.

Generates, set-based inside the database, N commissions over A affiliates and 12 finalized months,
one completed batch per month and one item per affiliate and month, then times
`sorae_payouts.portal.history.affiliate_history` for random affiliates (the portal's exact query: the view
filtered by affiliate id with a bound parameter). Target: < 10 ms per affiliate at 10M commissions.

    python bench/bench_history.py --rows 10000000 --affiliates 50000 --backend both
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_ledger

from sorae_payouts.demo.operators import approve_with_generated_keys
from sorae_payouts.ledger.sql import as_date
from sorae_payouts.month_end.manifest import compute_manifest_hash
from sorae_payouts.portal.history import affiliate_history
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

MONTHS = 12
POLICY = '{"minimum_minor": {"usd": 5000}, "default_minimum_minor": 1, "dual_approval_over_minor": {}}'

_SERIES = {
    "postgresql": "SELECT g AS x FROM generate_series(1, :n) g",
    "sqlite": "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < :n) SELECT x FROM s",
}
_MONTH = {  # month index m (0..11) -> first day of 2025-01 + m months, as a DATE
    "postgresql": "(DATE '2025-01-01' + make_interval(months => CAST({m} AS INT)))::date",
    "sqlite": "date('2025-01-01', '+' || ({m}) || ' months')",
}
_CONCAT = {"postgresql": "'{p}' || {x}", "sqlite": "'{p}' || {x}"}


def generate(engine: sa.Engine, rows: int, affiliates: int) -> float:
    dialect = engine.dialect.name
    series, month = _SERIES[dialect], _MONTH[dialect]
    started = time.perf_counter()
    with engine.begin() as conn:
        # Every row names its program (revision 0012: the key columns have no default).
        conn.execute(
            sa.text(
                f"INSERT INTO affiliate (program_id, affiliate_id, name, email, stripe_account_id, currency, "
                "imported_at) SELECT 'default', 'aff_' || x, 'Affiliate', 'a@example.com', 'acct_' || x, 'usd', "
                "CURRENT_TIMESTAMP "
                f"FROM ({series}) s"
            ),
            {"n": affiliates},
        )
        # Affiliate a gets commission x when x % A = a; months cycle per affiliate: every month has rows.
        conn.execute(
            sa.text(
                "INSERT INTO commission (program_id, commission_id, affiliate_id, order_id, amount_minor, currency, "
                "earned_at, "
                "period, imported_at) SELECT 'default', 'com_' || x, 'aff_' || (x % :a + 1), 'ord_' || x, 100 + x % "
                "5000, 'usd', "
                f"{month.format(m=f'(x / :a) % {MONTHS}')}, {month.format(m=f'(x / :a) % {MONTHS}')}, "
                "CURRENT_TIMESTAMP "
                f"FROM ({series}) s"
            ),
            {"n": rows, "a": affiliates},
        )
        periods = []
        for m in range(MONTHS):
            period = as_date(conn.execute(sa.text(f"SELECT {month.format(m=m)}")).scalar_one())
            key = str(period)[:7]
            conn.execute(
                sa.text(
                    "INSERT INTO commission_period (program_id, period, status, finalized_at, holding_days) "
                    f"VALUES ('default', {month.format(m=m)}, 'finalized', CURRENT_TIMESTAMP, 3)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO payout_batch (program_id, batch_id, period, status, manifest_hash, item_count, "
                    f"policy, created_at, built_at) VALUES ('default', :b, {month.format(m=m)}, 'draft', 'bench', 0, "
                    ":policy, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"b": f"payout_{key}", "policy": POLICY},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO payout_item (program_id, batch_id, affiliate_id, currency, stripe_account_id, "
                    "commission_count, "
                    "period_amount_minor, carried_in_minor, amount_minor, status) "
                    "SELECT 'default', :b, affiliate_id, currency, 'acct_x', COUNT(*), SUM(amount_minor), 0, "
                    "SUM(amount_minor), 'pending' "
                    f"FROM commission WHERE period = {month.format(m=m)} GROUP BY affiliate_id, currency"
                ),
                {"b": f"payout_{key}"},
            )
            # Through the real gates (the database refuses shortcuts): hash, a registered approval, then the
            # items walk pending -> processing -> posted, set-based.
            batch_id = f"payout_{key}"
            digest, count = compute_manifest_hash(conn, batch_id, period, json.loads(POLICY))
            conn.execute(
                sa.text("UPDATE payout_batch SET manifest_hash = :h, item_count = :n WHERE batch_id = :b"),
                {"h": digest, "n": count, "b": batch_id},
            )
            periods.append((period, digest))
    for period, _digest in periods:  # signed approvals, as operators make them
        approve_with_generated_keys(engine, period, program_id=DEFAULT_PROGRAM, now=datetime.now(UTC))
    with engine.begin() as conn:
        for status in ("processing", "posted"):
            conn.execute(sa.text(f"UPDATE payout_item SET status = '{status}'"))
        conn.execute(sa.text("UPDATE payout_batch SET status = 'completed'"))
    with engine.connect() as conn:
        # Fresh statistics, and on PostgreSQL the visibility map autovacuum would set after a bulk
        # insert (without it, index-only scans still visit the heap).
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
        )
    return time.perf_counter() - started


def measure(engine: sa.Engine, affiliates: int, samples: int, seed: int) -> tuple[list[float], int]:
    rng = random.Random(seed)
    timings, months = [], 0
    with engine.connect() as conn:
        affiliate_history(conn, "aff_1")  # warm the connection and the statement cache
        for _ in range(samples):
            affiliate = f"aff_{rng.randint(1, affiliates)}"
            started = time.perf_counter()
            entries = affiliate_history(conn, affiliate)
            timings.append((time.perf_counter() - started) * 1000)
            months = max(months, len(entries))
    return timings, months


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--affiliates", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"{args.rows:,} commissions, {args.affiliates:,} affiliates, {MONTHS} months, {args.samples} lookups")
    print("| backend  | pass | generate s | p50 ms | p95 ms | max ms | months per affiliate |")
    print("|----------|------|------------|--------|--------|--------|----------------------|")
    with tempfile.TemporaryDirectory() as workdir:
        for backend in backends:
            with scratch_ledger(backend, Path(workdir)) as (_, engine):
                seconds = generate(engine, args.rows, args.affiliates)
                # "cold": affiliates never read before; "warm": the same affiliates again (the portal's
                # steady state for active affiliates).
                for name in ("cold", "warm"):
                    timings, months = measure(engine, args.affiliates, args.samples, seed=7)
                    q = statistics.quantiles(timings, n=20)
                    print(
                        f"| {backend:<8} | {name:<4} | {seconds:>10.1f} | {statistics.median(timings):>6.2f} | "
                        f"{q[18]:>6.2f} | {max(timings):>6.2f} | {months:>20} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
