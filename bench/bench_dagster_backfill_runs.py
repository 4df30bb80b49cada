"""How many runs a UI backfill of month end makes over program-month partitions, and in which order.

    python bench/bench_dagster_backfill_runs.py --programs 20

`dagster dev` (webserver + daemon) on a scratch instance whose run queue has the production limit of
one run at a time per backfill (deploy/dagster.yaml), a PostgreSQL ledger with P programs (alice in
each, a commission in each month) plus a program `solo`. Backfills are launched as the UI launches
them (`launchPartitionBackfill` over finalized_commissions + payout_manifest):
  1. 2026-08 x the P programs;   2. 2026-09..2026-10 x the P programs;   3. 2026-08..2026-10 x solo.
Printed per backfill: its status, its runs (partition range, start order, status) and how many
program-months were materialized.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dagster as dg
import requests
from _common import scratch_ledger

from sorae_payouts_tests.factory import add_affiliate, add_commission, add_program

BIN = Path(sys.executable).parent
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
INSTANCE = """telemetry: {enabled: false}
concurrency:
  runs:
    tag_concurrency_limits:
      - {key: dagster/backfill, value: {applyLimitPerUniqueValue: true}, limit: 1}
"""


def seed(engine, programs: list[str]) -> None:
    for program in programs:
        if program != "default":
            add_program(engine, program)
        add_affiliate(engine, "alice", program_id=program)
        for month in (8, 9, 10):
            add_commission(
                engine,
                "alice",
                7_000 + month,
                program_id=program,
                earned_at=datetime(2026, month, 15, tzinfo=UTC),
            )


def graphql(port: int, query: str, variables: dict) -> dict:
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables}, timeout=60
    )
    response.raise_for_status()
    return response.json()["data"]


def backfill(port: int, home: Path, title: str, months: list[str], programs: list[str]) -> None:
    names = [f"{m}-01|{p}" for m in months for p in programs]
    started = time.time()
    launched = graphql(
        port,
        LAUNCH,
        {
            "params": {
                "title": title,
                "partitionNames": names,
                "assetSelection": [{"path": ["finalized_commissions"]}, {"path": ["payout_manifest"]}],
            }
        },
    )["launchPartitionBackfill"]
    status = None
    while status not in DONE:
        time.sleep(2)
        status = graphql(port, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]}))
        created = [r.dagster_run.run_id for r in sorted(records, key=lambda r: r.create_timestamp)]
        print(
            f"{title}: {len(names)} program-months -> backfill {status}, {len(records)} run(s), "
            f"{time.time() - started:.0f} s"
        )
        for run in sorted(
            (r.dagster_run for r in records), key=lambda r: instance.get_run_stats(r.run_id).start_time or 0
        ):
            tags = run.tags
            span = (
                f"{tags.get('dagster/asset_partition_range_start')} .. {tags.get('dagster/asset_partition_range_end')}"
                if "dagster/asset_partition_range_start" in tags
                else tags.get("dagster/partition")
            )
            failures = [
                r.event_log_entry.dagster_event.event_specific_data.error.message.splitlines()[0]
                for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
            ]
            print(
                f"   created #{created.index(run.run_id) + 1}, started in this order: {span}: {run.status.value} "
                f"{failures[:1]}"
            )
        done = instance.get_materialized_partitions(dg.AssetKey("payout_manifest"))
        print(f"   manifests materialized among them: {len(done & set(names))} of {len(names)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=20)
    args = parser.parse_args()
    programs = ["default"] + [f"m{i:03d}" for i in range(1, args.programs)]
    with tempfile.TemporaryDirectory() as tmp, scratch_ledger("postgres", Path(tmp)) as (ledger_url, engine):
        seed(engine, programs + ["solo"])
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(INSTANCE)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("program", programs + ["solo"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "DAGSTER_HOME": str(home), "SORAE_DATABASE_URL": ledger_url, "SORAE_DATA_DIR": tmp}
        server = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-m", "sorae_payouts.definitions", "-p", str(port), "-h", "127.0.0.1"],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    time.sleep(1)
            backfill(port, home, f"2026-08 x {len(programs)} programs", ["2026-08"], programs)
            backfill(port, home, f"2026-09..2026-10 x {len(programs)} programs", ["2026-09", "2026-10"], programs)
            backfill(port, home, "2026-08..2026-10 x solo", ["2026-08", "2026-09", "2026-10"], ["solo"])
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
