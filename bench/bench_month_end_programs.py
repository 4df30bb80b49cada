"""Month end for many programs at once: finalize + manifest + the three checks, set-based across programs.

    python bench/bench_month_end_programs.py --programs 1000 --affiliates 1000 --commissions 1000000

Generates, in SQL (generate_series, no CSV round trip), P programs registered as `programs.add_program`
registers them (the row and its `added` history event; every 10th program with its own minimums), A
affiliates per program (same affiliate ids in every program), N commissions in one month spread over
them (3 currencies) and order events on 5% of them. Then times the domain functions the Dagster layer
calls for the whole set: the month-order pre-check, `finalize_programs`, `build_manifests` and the
manifest checks (`audit.*_per_program`), each once for every program. PostgreSQL only (the target);
the machine's 2 cores are shared, so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HEADER, PeakRss, row, scratch_ledger

from sorae_payouts.month_end import audit
from sorae_payouts.month_end.finalize import finalize_programs
from sorae_payouts.month_end.manifest import DEFAULT_DUAL_APPROVAL_OVER, DEFAULT_MINIMUM_PAYOUT, PayoutPolicy
from sorae_payouts.month_end.manifest_build import build_manifests
from sorae_payouts.month_end.month_order import month_order_refusals

MONTH = date(2026, 10, 1)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BACKEND = "postgres"

_PROGRAMS = """
INSERT INTO program (program_id, name, paying_account_ref, policy, status, created_at, created_by)
SELECT 'p' || lpad(n::text, 5, '0'), 'Merchant ' || n, NULL,
       CASE WHEN n % 10 = 0 THEN '{"minimum_minor": {"usd": 2500, "eur": 2500}}' ELSE '{}' END::json,
       'active', :now, 'bench'
FROM generate_series(1, :programs) n;
INSERT INTO program_event (program_id, event, change, recorded_by, recorded_at)
SELECT program_id, 'added', json_build_object('name', name, 'paying_account', 'platform', 'policy', policy),
       'bench', :now FROM program WHERE created_by = 'bench';
"""

# Affiliate a of every program: same ids across programs, currency by id, one connected account each.
_AFFILIATES = """
INSERT INTO affiliate (program_id, affiliate_id, name, email, stripe_account_id, currency, imported_at)
SELECT p.program_id, 'aff_' || a, 'Affiliate ' || a, 'aff_' || a || '@example.com',
       'acct_' || p.program_id || '_' || a, (ARRAY['usd', 'eur', 'jpy'])[1 + a % 3], :now
FROM program p CROSS JOIN generate_series(1, :affiliates) a WHERE p.created_by = 'bench'
"""

# Commission i: program i mod P, affiliate (i div P) scattered over the program's affiliates, its currency; amounts
# 1.00-200.00 (jpy 100-20,000); earned during October.
_COMMISSIONS = """
INSERT INTO commission (program_id, commission_id, affiliate_id, order_id, amount_minor, currency, earned_at, period,
                        imported_at)
SELECT 'p' || lpad((1 + i % :programs)::text, 5, '0'), 'com_' || i, 'aff_' || a, 'ord_' || i,
       100 + (i * 7919) % 19901, (ARRAY['usd', 'eur', 'jpy'])[1 + a % 3],
       TIMESTAMPTZ '2026-10-01 00:00:00+00' + ((i * 104729) % 2678400) * INTERVAL '1 second', DATE '2026-10-01', :now
FROM (SELECT i, 1 + ((i / :programs) * 2654435761) % :affiliates AS a
      FROM generate_series(CAST(1 AS BIGINT), CAST(:commissions AS BIGINT)) i) g
"""

# 5% of the orders get an event: half cancellations, half partial reversals of 1.00.
_EVENTS = """
INSERT INTO order_event (program_id, event_id, order_id, kind, amount_minor, currency, occurred_at, imported_at)
SELECT c.program_id, 'evt_' || c.commission_id, c.order_id,
       CASE WHEN c.commission_pk % 40 = 0 THEN 'cancellation' ELSE 'partial_reversal' END,
       CASE WHEN c.commission_pk % 40 = 0 THEN NULL ELSE 100 END,
       CASE WHEN c.commission_pk % 40 = 0 THEN NULL ELSE c.currency END,
       c.earned_at + INTERVAL '1 day', :now
FROM commission c WHERE c.commission_pk % 20 = 0
"""


def generate(engine, programs: int, affiliates: int, commissions: int) -> tuple[list[str], dict[str, float]]:
    import sqlalchemy as sa

    seconds = {}
    params = {"now": NOW, "programs": programs, "affiliates": affiliates, "commissions": commissions}
    for name, statement in (
        ("programs", _PROGRAMS),
        ("affiliates", _AFFILIATES),
        ("commissions", _COMMISSIONS),
        ("order events", _EVENTS),
    ):
        started = time.perf_counter()
        with engine.begin() as conn:
            for part in filter(str.strip, statement.split(";")):
                conn.execute(sa.text(part), {k: v for k, v in params.items() if f":{k}" in part})
        seconds[name] = time.perf_counter() - started
    with engine.begin() as conn:
        ids = (
            conn.execute(sa.text("SELECT program_id FROM program WHERE created_by = 'bench' ORDER BY 1"))
            .scalars()
            .all()
        )
        conn.exec_driver_sql("ANALYZE")
    return ids, seconds


def run(args) -> list[str]:
    policy = PayoutPolicy.from_major(DEFAULT_MINIMUM_PAYOUT, DEFAULT_DUAL_APPROVAL_OVER)
    lines = [HEADER]
    with tempfile.TemporaryDirectory() as tmp, scratch_ledger(BACKEND, Path(tmp)) as (_url, engine):
        with PeakRss() as rss:
            ids, generated = generate(engine, args.programs, args.affiliates, args.commissions)
        for name, seconds in generated.items():
            lines.append(row(f"generate {name} (SQL)", BACKEND, seconds, None, rss.peak_mb))
        phases = []
        with PeakRss() as rss:
            started = time.perf_counter()
            with engine.connect() as conn:
                refused = month_order_refusals(conn, [MONTH], ids)
            phases.append(("month order (all programs)", time.perf_counter() - started, f"{len(refused)} refused"))
            started = time.perf_counter()
            finalized = finalize_programs(engine, MONTH, ids, now=NOW, holding_days=3)
            adjustments = sum(r.adjustments_booked for r in finalized.reports.values())
            phases.append(
                (
                    "finalize_programs",
                    time.perf_counter() - started,
                    f"{len(finalized.reports)} programs, {adjustments} adjustments, {len(finalized.refused)} refused",
                )
            )
            started = time.perf_counter()
            built = build_manifests(engine, MONTH, ids, policy=policy, now=NOW)
            items = sum(r.item_count for r in built.reports.values())
            phases.append(
                (
                    "build_manifests",
                    time.perf_counter() - started,
                    f"{len(built.reports)} batches, {items} items, {len(built.refused)} refused",
                )
            )
            failed = 0
            with engine.connect() as conn:
                for name, check in audit.MANIFEST_CHECKS.items():
                    started = time.perf_counter()
                    results = check(conn, MONTH, ids)
                    failed += sum(1 for r in results.values() if not r.passed)
                    phases.append(
                        (
                            f"check {name}",
                            time.perf_counter() - started,
                            f"{sum(1 for r in results.values() if r.passed)} programs passed",
                        )
                    )
        assert not refused and not finalized.refused and not built.refused and not failed
        for name, seconds, note in phases:
            lines.append(row(name, BACKEND, seconds, args.commissions, rss.peak_mb, note))
        total = sum(seconds for _, seconds, _ in phases)
        lines.append(
            row(
                "month end, all programs (domain)",
                BACKEND,
                total,
                args.commissions,
                rss.peak_mb,
                f"{args.programs} programs; target well under 60 s",
            )
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=1_000)
    parser.add_argument("--affiliates", type=int, default=1_000, help="per program")
    parser.add_argument("--commissions", type=int, default=1_000_000)
    args = parser.parse_args()
    lines = run(args)
    print(
        f"month end across programs: {args.programs:,} programs x {args.affiliates:,} affiliates, "
        f"{args.commissions:,} commissions in {MONTH:%Y-%m}, 3 currencies"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
