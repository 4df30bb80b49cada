"""The seeded money-path simulation of issue 16, large: many seeds, programs, affiliates and months.

    python bench/bench_simulation.py --seeds 20 --programs 5 --affiliates 20 --months 6 --backend both

Each seed lives through the months in one ledger (funding, carries, reversals, decisions two at once,
executions of one program twice at once, dropped answers, a restored backup) and then in a ledger re-created
from the same files; after each, the invariants are checked against the sandbox's records
(`sorae_payouts_tests/simulation.py`): nobody received more than they earned (less write-offs), one
transfer per payment identity, no charge overspent, every reversed cent decided at most once. It prints,
per backend, the seeds run, the faults met and the time; any broken invariant stops it with the seed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the simulation lives with the tests
from _common import scratch_ledger

from sorae_payouts_tests.ledger_backup import Backup
from sorae_payouts_tests.simulation import World, run
from sorae_sandbox import SandboxServer

API_KEY = "sk_test_sorae_bench"
BALANCES = {"usd": 10_000_000_00}


def _months(n: int) -> list[date]:
    first = date(2026, 12 - n + 1, 1) if n <= 11 else date(2026, 1, 1)
    months, month = [], first
    for _ in range(n):
        months.append(month)
        month = month.replace(year=month.year + (month.month == 12), month=month.month % 12 + 1)
    return months


def run_seed(seed: int, backend: str, args, workdir: Path) -> dict:
    sandbox = SandboxServer(port=0, state_path=workdir / f"sandbox-{seed}.sqlite3", balances=BALANCES).start()
    ledgers = []
    try:

        def make_engine():
            context = scratch_ledger(backend, workdir)
            url, engine = context.__enter__()
            ledgers.append((context, url, engine))
            return engine

        def backup(engine):
            url = next(u for _, u, e in ledgers if e is engine)
            return Backup(engine, url, workdir).restore

        world = World(
            seed, [f"p{i}" for i in range(args.programs)], affiliates=args.affiliates, months=_months(args.months)
        )
        return run(world, sandbox, API_KEY, make_engine, backup)
    finally:
        for context, _, engine in ledgers:
            engine.dispose()
            context.__exit__(None, None, None)
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--programs", type=int, default=3)
    parser.add_argument("--affiliates", type=int, default=8)
    parser.add_argument("--months", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        totals: Counter = Counter()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                figures = run_seed(seed, backend, args, Path(tmp))
                totals.update({k: v for k, v in figures.items() if isinstance(v, int)})
                print(f"{backend} seed {seed}: invariants hold; {figures}", flush=True)
        print(
            f"{backend}: {args.seeds} seeds x {args.programs} programs x {args.affiliates} affiliates x "
            f"{args.months} months in {time.perf_counter() - started:.1f} s; totals {dict(totals)}"
        )


if __name__ == "__main__":
    main()
