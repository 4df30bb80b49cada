"""A backfill launched the way the UI launches it: `dagster dev` (webserver + daemon) in a subprocess,
the `launchPartitionBackfill` GraphQL mutation over three months of the default program, one of which
is not approved. One run covers the three partitions (program-months); only the approved months are
paid, the unapproved one is reported for its partition, sends nothing, and fails the run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import requests
import sqlalchemy as sa

from sorae_payouts.core.periods import parse_period
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.execution.conftest import API_KEY, sandbox_transfers
from sorae_payouts_tests.factory import NOW, add_affiliate, add_commission, approve, build_manifest, finalize_period

REPO = Path(__file__).resolve().parents[2]
MONTHS = ["2026-08", "2026-09", "2026-10"]
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } } }"""
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed_three_months(engine, stripe_client):
    account = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    add_affiliate(engine, "alice", account=account)
    for i, month in enumerate(MONTHS):
        add_commission(engine, "alice", 10_000 + i, earned_at=datetime.fromisoformat(f"{month}-15T00:00:00+00:00"))
    policy = PayoutPolicy.from_major({"usd": "1.00"})
    for month in MONTHS:
        finalize_period(engine, parse_period(month), now=NOW, holding_days=3)
        build_manifest(engine, parse_period(month), policy=policy, now=NOW)
    for month in ("2026-08", "2026-10"):  # September stays a draft: nobody approved it
        approve(engine, parse_period(month), "ops")


def _graphql(port, query, variables):
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    return response.json()["data"]


def test_ui_backfill_over_three_months_pays_only_approved_batches(engine, ledger_url, sandbox, stripe_client, tmp_path):
    _seed_three_months(engine, stripe_client)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SORAE_DATABASE_URL": ledger_url,
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": sandbox.url,
        "SORAE_STRIPE_RATE_LIMIT": "200",
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:  # as `programs add` / the sensor would
        instance.add_dynamic_partitions("program", ["default"])
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-m",
            "sorae_payouts.definitions",
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not start"
            time.sleep(1)
        launched = _graphql(
            port,
            LAUNCH,
            {
                "params": {
                    "assetSelection": [{"path": ["executed_transfers"]}],
                    "partitionNames": [f"{m}-01|default" for m in MONTHS],
                    "title": "pay Aug-Oct",
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        status, deadline = None, time.monotonic() + 240
        while status not in TERMINAL:
            assert time.monotonic() < deadline, f"backfill still {status}"
            time.sleep(2)
            status = _graphql(port, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert [t.amount for t in sandbox_transfers(stripe_client, "payout_2026-08")] == [10_000]
    assert [t.amount for t in sandbox_transfers(stripe_client, "payout_2026-10")] == [10_002]
    assert sandbox_transfers(stripe_client, "payout_2026-09") == []
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT batch_id, status FROM payout_batch")).all())
    assert statuses == {"payout_2026-08": "completed", "payout_2026-09": "draft", "payout_2026-10": "completed"}
    assert status in ("COMPLETED_FAILED", "FAILED", "COMPLETED")  # the run failed on September, as it must
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]}))
        [run] = runs  # one run for the three program-months (grouped by program: the rectangle Aug..Oct x default)
        assert run.status == dg.DagsterRunStatus.FAILURE
        materialized = instance.get_materialized_partitions(dg.AssetKey("executed_transfers"))
    assert materialized == {"2026-08-01|default", "2026-10-01|default"}
