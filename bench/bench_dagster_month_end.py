"""Month end for many programs THROUGH DAGSTER: one run of month_end_job over a month x every program.

    python bench/bench_dagster_month_end.py --programs 1000 --affiliates 1000 --commissions 1000000
    python bench/bench_dagster_month_end.py --programs 100 --launch   # a run worker process, as the CLI

The ledger is generated in SQL as in bench_month_end_programs.py (its `generate`); the Dagster instance
stores runs and events in a scratch PostgreSQL database (dagster-postgres, as deploy/dagster.yaml), or
with `--event-log pooled` through `sorae_payouts.instance.pg_event_log` (pooled connections). One run covers
2026-10 x every program partition (the range the monthly schedule asks for). Reported: the run's wall
time, the domain's share (the set calls' `ledger_seconds` / `seconds` metadata of the run) and the rest
(Dagster: run creation with one planned event per asset partition, one materialization per asset and
partition, one evaluation per check and partition; with --launch also the code server and run worker).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dagster as dg
import psutil
import psycopg
import sqlalchemy as sa
from _common import HEADER, PG_ADMIN_URL, PeakRss, row, scratch_ledger
from bench_month_end_programs import generate

from sorae_payouts.core.periods import parse_period
from sorae_payouts.defs.lib.partitions import ProgramMonth, range_tags
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings

MONTH = "2026-10-01"
STORAGE = {
    "default": "storage:\n  postgres:\n    postgres_url: {url}\n",
    "pooled": (
        "run_storage:\n  module: dagster_postgres.run_storage\n  class: PostgresRunStorage\n"
        "  config:\n    postgres_url: {url}\n"
        "event_log_storage:\n  module: sorae_payouts.instance.pg_event_log\n"
        "  class: PooledPostgresEventLogStorage\n  config:\n    postgres_url: {url}\n"
        "schedule_storage:\n  module: dagster_postgres.schedule_storage\n  class: PostgresScheduleStorage\n"
        "  config:\n    postgres_url: {url}\n"
    ),
}


def dagster_home(tmp: Path, event_log: str) -> tuple[Path, str]:
    name = f"sorae_bench_dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name, drivername="postgresql+psycopg2"))
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(STORAGE[event_log].format(url=url) + "telemetry:\n  enabled: false\n")
    return home, name


def domain_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    """The set calls' own time: `ledger_seconds` once per asset and month, `seconds` once per month for
    the three checks (one set call evaluates them all)."""
    seen, total = set(), 0.0
    for record in instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    ).records:
        data = record.event_log_entry.dagster_event.event_specific_data
        if hasattr(data, "materialization"):
            meta, name = data.materialization.metadata, "ledger_seconds"
            what = (data.materialization.asset_key, str(data.materialization.partition)[:10])
        else:
            meta, name, what = data.metadata, "seconds", ("checks", str(data.partition)[:10])
        if what not in seen and name in meta:
            seen.add(what)
            total += meta[name].value
    return total


def run(args) -> list[str]:
    lines = [HEADER]
    with tempfile.TemporaryDirectory() as tmp, scratch_ledger("postgres", Path(tmp)) as (ledger_url, engine):
        ids, _ = generate(engine, args.programs, args.affiliates, args.commissions)
        home, storage_db = dagster_home(Path(tmp), args.event_log)
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                instance.add_dynamic_partitions("program", ids)
                with PeakRss() as rss:
                    started = time.perf_counter()
                    profiler = cProfile.Profile() if args.profile else None
                    if profiler:
                        profiler.enable()
                    run_id, success = (
                        _launched(instance, ledger_url, Path(tmp))
                        if args.launch
                        else _in_process(instance, ledger_url, ids)
                    )
                    if profiler:
                        profiler.disable()
                        profiler.dump_stats(args.profile)
                    wall = time.perf_counter() - started
                # The code server exits after the workspace closes; dropping the instance's database
                # under it would leave it hanging (an orphan holding our stdout).
                psutil.wait_procs(psutil.Process().children(recursive=True), timeout=60)
                domain = domain_seconds(instance, run_id)
                mats = len(instance.get_materialized_partitions(dg.AssetKey("payout_manifest")))
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{storage_db}" WITH (FORCE)')
    how = "launched run (code server + run worker)" if args.launch else "execute_in_process"
    lines.append(
        row(
            "month end through Dagster",
            "postgres",
            wall,
            args.commissions,
            rss.peak_mb,
            f"{how}, event log {args.event_log}; success={success}, {mats} manifests materialized",
        )
    )
    lines.append(row("  of which domain (set calls)", "postgres", domain, None, rss.peak_mb))
    lines.append(
        row(
            "  of which Dagster and the rest",
            "postgres",
            wall - domain,
            None,
            rss.peak_mb,
            f"{args.programs} programs x (2 assets + 3 checks)",
        )
    )
    return lines


def _in_process(instance, ledger_url: str, ids: list[str]) -> tuple[str, bool]:
    from sorae_payouts.definitions import defs

    tags = range_tags(ProgramMonth(parse_period(MONTH), ids[0]), ProgramMonth(parse_period(MONTH), ids[-1]))
    result = defs.resolve_job_def("month_end_job").execute_in_process(
        tags=tags,
        instance=instance,
        raise_on_error=False,
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()},
    )
    return result.run_id, result.success


def _launched(instance, ledger_url: str, tmp: Path) -> tuple[str, bool]:
    from sorae_payouts.instance.launching import launch_range_and_wait

    os.environ.update(SORAE_DATABASE_URL=ledger_url, SORAE_DATA_DIR=str(tmp), SORAE_QUIET_DAGSTER_WARNINGS="1")
    launched = launch_range_and_wait("month_end_job", MONTH, MONTH, instance=instance)
    return launched.run_id, launched.success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=1_000)
    parser.add_argument("--affiliates", type=int, default=1_000, help="per program")
    parser.add_argument("--commissions", type=int, default=1_000_000)
    parser.add_argument("--event-log", choices=sorted(STORAGE), default="default")
    parser.add_argument("--launch", action="store_true", help="launch a run (code server + run worker process)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the in-process run into FILE (pstats)")
    args = parser.parse_args()
    lines = run(args)
    print(
        f"month end through Dagster: {args.programs:,} programs x {args.affiliates:,} affiliates, "
        f"{args.commissions:,} commissions in 2026-10"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
