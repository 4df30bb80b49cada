"""A dead run worker never holds the stripe_api pool: `dagster dev` (webserver + daemon + code server)
on a temporary DAGSTER_HOME with a copy of the repo-root dagster.yaml, `payout_execution_job` launched
through GraphQL, its run worker (and the step process it spawned) killed with SIGKILL mid-batch, as
an OOM kill or a lost container would. Without a person: the run is marked FAILURE, its pool slot is
freed, the run-retry daemon launches a new run that takes the slot and completes the batch, and no
item is paid twice."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
import requests
import sqlalchemy as sa
import stripe
from dagster_graphql import DagsterGraphQLClient

from sorae_payouts_tests.execution.conftest import (
    API_KEY,
    BALANCES,
    assert_paid_exactly_once,
    sandbox_transfers,
    seed_batch,
)
from sorae_sandbox import SandboxServer

REPO = Path(__file__).resolve().parents[2]
ITEMS = 60
PID = re.compile(r"Started process for run \(pid: (\d+)\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, seconds: float, probe):
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {seconds:.0f} s waiting for {what}"
        time.sleep(0.5)


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for event in instance.all_logs(run_id):
        match = PID.search(event.message or "")
        if match:
            return int(match.group(1))
    return None


def _kill_tree(pid: int) -> list[int]:
    worker = psutil.Process(pid)
    victims = [worker, *worker.children(recursive=True)]
    for process in victims:
        process.send_signal(signal.SIGKILL)
    return [p.pid for p in victims]


@pytest.mark.slow
def test_killed_run_worker_is_failed_and_its_slot_freed_then_a_retry_completes(engine, ledger_url, tmp_path):
    sandbox = SandboxServer(port=0, state_path=tmp_path / "sandbox.sqlite3", balances=BALANCES, latency_ms=150).start()
    try:
        client = stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.url}, max_network_retries=0)
        seed_batch(engine, client, {f"aff{i:02d}": 1_000 + i for i in range(ITEMS)})
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
        with dg.DagsterInstance.from_config(str(home)) as instance:  # the program's partition key
            instance.add_dynamic_partitions("program", ["default"])
        port = free_port()
        # 2 requests/s: the batch takes ~30 s, long enough to kill its worker in the middle.
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "SORAE_DATABASE_URL": ledger_url,
            "STRIPE_API_KEY": API_KEY,
            "STRIPE_API_BASE": sandbox.url,
            "SORAE_STRIPE_RATE_LIMIT": "2",
        }
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
            _wait("dagster dev", 180, lambda: _responds(port))
            graphql = DagsterGraphQLClient("127.0.0.1", port_number=port)
            first = graphql.submit_job_execution(
                "payout_execution_job",
                repository_location_name="sorae_payouts.definitions",
                tags={"dagster/partition": "2026-10-01|default"},
            )
            with dg.DagsterInstance.from_config(str(home)) as instance:
                worker = _wait("the run worker", 180, lambda: _run_worker_pid(instance, first))
                _wait("the first transfers", 120, lambda: len(sandbox_transfers(client)) >= 3)
                killed = _kill_tree(worker)
                paid_when_killed = len(sandbox_transfers(client))
                assert paid_when_killed < ITEMS, "the batch finished before the kill: slow the sandbox down"

                _wait(
                    "the killed run to be marked failed",
                    180,
                    lambda: instance.get_run_by_id(first).status == dg.DagsterRunStatus.FAILURE,
                )
                retry = _wait("the automatic retry run", 180, lambda: _child_run(instance, first))
                _wait("the retry to finish", 300, lambda: instance.get_run_by_id(retry).is_finished)
                assert instance.get_run_by_id(retry).status == dg.DagsterRunStatus.SUCCESS, _failure_messages(
                    instance, retry
                )
                assert killed and paid_when_killed >= 3
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        paid = assert_paid_exactly_once(engine, client)
        assert len(paid) == ITEMS and len(sandbox_transfers(client)) == ITEMS
    finally:
        sandbox.stop()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM payout_batch")).scalar_one() == "completed"
        assert set(conn.execute(sa.text("SELECT status FROM payout_item")).scalars()) == {"posted"}


def _responds(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok
    except requests.ConnectionError:
        return False


def _child_run(instance: dg.DagsterInstance, parent_run_id: str) -> str | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": parent_run_id}))
    return runs[0].run_id if runs else None


def _failure_messages(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(
        e.message or "" for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_failure
    )
