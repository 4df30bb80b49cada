"""Hostile-file benchmark: peak memory of an import for any file (issue 9, target < 1 GB RSS).

    python bench/bench_hostile_import.py --size-mb 1024 --backend sqlite
    python bench/bench_hostile_import.py --size-mb 1024 --backend both --cases garbage header valid

Cases, each generated into a temporary directory (deleted afterwards) and imported in a fresh child
process, whose peak RSS (VmHWM) is reported, so nothing the generator held counts:
- garbage: a valid row, a single line of SIZE MB of garbage (no newline inside), a valid row;
- header:  a header line of SIZE MB (refused whole: no readable header);
- valid:   SIZE MB of valid commissions (about 70 bytes a row), after an affiliates file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HEADER, row, scratch_ledger

from sorae_payouts.ingest import ImportKind, UnreadableFileError, import_file
from sorae_payouts.ledger.database import create_ledger_engine

COMMISSION_HEADER = b"commission_id,affiliate_id,order_id,amount,currency,earned_at\n"
AFFILIATES = 50_000
ROWS_PER_WRITE = 200_000


def valid_lines(start: int, count: int) -> bytes:
    return "".join(
        f"com_{i:010d},aff_{i % AFFILIATES:06d},ord_{i:010d},{1 + i % 9000}.{i % 100:02d},usd,"
        f"2026-10-{1 + i % 28:02d}T12:00:00Z\n"
        for i in range(start, start + count)
    ).encode()


def write_garbage_line(handle, size: int) -> None:
    block = (b'garbage,\xff\x00"' * 4096)[: 1 << 20].replace(b"\n", b" ")
    for _ in range(size // len(block)):
        handle.write(block)
    handle.write(b"\n")


def generate(case: str, workdir: Path, size_mb: int) -> tuple[Path, int]:
    """The input file of `case` and its number of data rows."""
    size = size_mb << 20
    path = workdir / f"{case}.csv"
    with path.open("wb") as handle:
        if case == "header":  # written a MB at a time: this process never holds the line either
            handle.write(b"commission_id,")
            for _ in range(size >> 20):
                handle.write(b"h" * (1 << 20))
            handle.write(b"\n" + valid_lines(0, 1))
            return path, 1
        handle.write(COMMISSION_HEADER)
        if case == "garbage":
            handle.write(valid_lines(0, 1))
            write_garbage_line(handle, size)
            handle.write(valid_lines(1, 1))
            return path, 3
        rows, written = 0, 0
        while written < size:
            chunk = valid_lines(rows, ROWS_PER_WRITE)
            handle.write(chunk)
            rows, written = rows + ROWS_PER_WRITE, written + len(chunk)
    return path, rows


def write_affiliates(workdir: Path) -> Path:
    path = workdir / "affiliates.csv"
    path.write_text(
        "affiliate_id,name,email,stripe_account_id,currency\n"
        + "".join(f"aff_{i:06d},Affiliate {i},a{i}@example.com,acct_{i:06d},usd\n" for i in range(AFFILIATES))
    )
    return path


def child(kind: str, path: str, url: str) -> None:
    """One import in this (fresh) process; prints its outcome and peak RSS as JSON."""
    engine = create_ledger_engine(url)
    started = time.perf_counter()
    try:
        report = import_file(engine, ImportKind(kind), Path(path))
        outcome = {
            "rows": report.rows_read,
            "inserted": report.inserted,
            "rejected": report.rejected_rows,
            "note": f"inserted {report.inserted:,}, rejected {report.rejected_rows:,}",
        }
    except UnreadableFileError as exc:
        outcome = {"rows": 0, "note": f"refused whole: {str(exc).split(': ', 1)[1][:70]}"}
    outcome["seconds"] = time.perf_counter() - started
    outcome["peak_mb"] = peak_rss_mb()
    print(json.dumps(outcome))


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not `ru_maxrss`: Linux carries the parent's high-water
    mark over fork + exec into it, so it would count what the generating process held."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, path: Path, url: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument(
        "--cases", nargs="+", choices=["garbage", "header", "valid"], default=["garbage", "header", "valid"]
    )
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    lines = [HEADER]
    with tempfile.TemporaryDirectory(prefix="sorae_hostile_") as tmp:
        workdir = Path(tmp)
        affiliates = write_affiliates(workdir)
        for case in args.cases:
            started = time.perf_counter()
            path, rows = generate(case, workdir, args.size_mb)
            lines.append(
                row(f"generate {case} ({path.stat().st_size >> 20:,} MB)", "-", time.perf_counter() - started, rows, 0)
            )
            for backend in backends:
                with scratch_ledger(backend, workdir) as (url, engine):
                    run_child("affiliates", affiliates, url)
                    out = run_child("commissions", path, url)
                lines.append(row(f"import {case}", backend, out["seconds"], out["rows"], out["peak_mb"], out["note"]))
                print(lines[-1], flush=True)
            path.unlink()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
