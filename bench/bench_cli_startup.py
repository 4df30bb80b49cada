"""CLI start-up time: commands that need no data frames must answer in under 0.5 s.

Runs each command N times as a fresh process (what an operator's shell does) on a small ledger and
prints the median and worst wall time; also the `python -c pass` floor of this machine. Not a unit
test: CPU contention shifts these figures, the integrator re-runs them on a quiet machine.

    python bench/bench_cli_startup.py --runs 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = [
    ["--help"],
    ["batch", "list"],
    ["batch", "list", "--json"],
    ["batch", "show", "2026-10"],
    ["batch", "show", "2031-01"],
    ["history", "aff_000001", "--json"],
]


def _time(argv: list[str], env: dict, cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    exe = str(Path(sys.executable).parent / "sorae-payouts")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SORAE_DATA_DIR": tmp, "SORAE_DATABASE_URL": f"sqlite:///{tmp}/ledger.sqlite3"}
        env.pop("DAGSTER_HOME", None)
        subprocess.run([exe, "db", "upgrade"], env=env, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        floor = [_time([sys.executable, "-c", "pass"], env, tmp) for _ in range(args.runs)]
        print(
            f"| command | median s | worst s |\n|---|---|---|\n| (python -c pass) | "
            f"{statistics.median(floor):.3f} | {max(floor):.3f} |"
        )
        for command in COMMANDS:
            times = [_time([exe, *command], env, tmp) for _ in range(args.runs)]
            print(f"| sorae-payouts {' '.join(command)} | {statistics.median(times):.3f} | {max(times):.3f} |")


if __name__ == "__main__":
    main()
