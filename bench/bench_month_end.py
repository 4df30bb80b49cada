"""Month-end benchmark: generate N commissions, import them, then finalize + manifest through Dagster.

    python bench/bench_month_end.py --rows 1000000 --affiliates 50000 --backend both

Prints, per backend: import rows/s per file, the ledger time of finalize and of the manifest (measured
inside the assets), the checks, Dagster's own overhead, and the peak RSS of this process for each
phase (the PostgreSQL server's memory is not included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HEADER, PeakRss, row, scratch_ledger

from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings
from sorae_payouts.demo.data import write_demo_data
from sorae_payouts.ingest import ImportKind, import_file

MONTH = "2026-10"


def bench_backend(backend: str, files, workdir: Path, rows: int) -> list[str]:
    out = []
    with scratch_ledger(backend, workdir) as (url, engine):
        for kind, path in (
            (ImportKind.AFFILIATES, files.affiliates),
            (ImportKind.COMMISSIONS, files.commissions),
            (ImportKind.ORDER_EVENTS, files.order_events),
        ):
            with PeakRss() as rss:
                report = import_file(engine, kind, Path(path))
            assert report.rejected_count == 0, f"{kind}: {report.rejected_count} rejected"
            out.append(row(f"import {kind.value}", backend, report.seconds, report.rows_read, rss.peak_mb))
        job = defs.resolve_job_def("month_end_job")
        with PeakRss() as rss:
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=f"{MONTH}-01",
                instance=dg.DagsterInstance.ephemeral(),
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                resources={"ledger": LedgerResource(database_url=url), "payout_settings": PayoutSettings()},
            )
            wall = time.perf_counter() - started
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
        finalize = result.asset_materializations_for_node("finalized_commissions")[0].metadata
        manifest = result.asset_materializations_for_node("payout_manifest")[0].metadata
        checks = {e.check_name: e.metadata["seconds"].value for e in result.get_asset_check_evaluations()}
        f_s, m_s = finalize["ledger_seconds"].value, manifest["ledger_seconds"].value
        out.append(
            row(
                "finalize (ledger)",
                backend,
                f_s,
                rows,
                rss.peak_mb,
                f"{finalize['adjustments_booked'].value} adjustments",
            )
        )
        out.append(row("manifest (ledger)", backend, m_s, rows, rss.peak_mb, f"{manifest['item_count'].value} items"))
        out.append(row("finalize + manifest (ledger)", backend, f_s + m_s, rows, rss.peak_mb, "target <= 4 s"))
        out.append(
            row(
                "3 manifest checks",
                backend,
                sum(checks.values()),
                rows,
                rss.peak_mb,
                ", ".join(f"{k} {v:.2f}s" for k, v in checks.items()),
            )
        )
        out.append(
            row(
                "Dagster overhead (run - above)",
                backend,
                wall - f_s - m_s - sum(checks.values()),
                None,
                rss.peak_mb,
                f"whole run {wall:.2f} s",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--affiliates", type=int, default=50_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        with PeakRss() as rss:
            started = time.perf_counter()
            files = write_demo_data(
                workdir / "data", affiliates=args.affiliates, commissions=args.rows, month=MONTH, event_share=0.05
            )
            generated = time.perf_counter() - started
        lines = [
            HEADER,
            row(
                "generate CSV files", "-", generated, args.rows, rss.peak_mb, f"{files.summary['events']} order events"
            ),
        ]
        backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
        for backend in backends:
            lines += bench_backend(backend, files, workdir, args.rows)
    print(f"month-end benchmark: {args.rows:,} commissions, {args.affiliates:,} affiliates, 3 currencies")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
