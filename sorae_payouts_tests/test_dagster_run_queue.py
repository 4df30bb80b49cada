"""deploy/dagster.yaml's run queue, drained by Dagster's own queue daemon ticked in-process on a real
PostgreSQL instance with the default run launcher (a process per run): beyond its per-account limit a
run for a paying account waits in the queue while a run for another account starts, and it starts
once one of its account's runs has finished."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from sorae_payouts_tests.dagster_pg_home import production_dagster_home

LOCATION, JOB = "queue_probe", "queue_probe_job"
ACCOUNT_TAG = "sorae/paying_account"
QUEUED, IN_PROGRESS = dg.DagsterRunStatus.QUEUED, {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # the run's own event log keeps all

pytestmark = pytest.mark.slow  # a code server and real run processes


def _submit(instance, workspace, tags: dict[str, str]) -> str:
    """Create a run of the probe job with its code location's origin and submit it to the queue."""
    location = workspace.get_code_location(LOCATION)
    [repo] = location.get_repositories().values()
    remote_job = location.get_job(
        JobSubsetSelector(location_name=LOCATION, repository_name=repo.name, job_name=JOB, op_selection=None)
    )
    plan = location.get_execution_plan(
        remote_job, QUIET, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    run = instance.create_run(
        job_name=JOB,
        run_id=None,
        run_config=QUIET,
        resolved_op_selection=None,
        step_keys_to_execute=None,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=tags,
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repo.asset_graph,
    )
    return instance.submit_run(run.run_id, workspace).run_id


def _status(instance, run_id):
    return instance.get_run_by_id(run_id).status


def _wait_until(instance, run_ids, wanted, what):
    """Liveness only (no timing is asserted): fail with the statuses seen after a generous while."""
    deadline = time.monotonic() + 90
    while not all(_status(instance, r) in wanted for r in run_ids):
        if time.monotonic() > deadline:
            pytest.fail(f"runs never {what}: {[_status(instance, r).value for r in run_ids]}")
        time.sleep(0.2)


def test_queue_holds_runs_beyond_an_accounts_limit_and_not_other_accounts(tmp_path, request, monkeypatch):
    home = production_dagster_home(tmp_path, request, monkeypatch)
    # Test-only: leaving the workspace waits for its code server to exit, so that no server is still
    # shutting down against the storage database when the fixture drops it.
    with (home / "dagster.yaml").open("a") as instance_file:
        instance_file.write("\ncode_servers:\n  wait_for_local_processes_on_shutdown: true\n")
    release = tmp_path / "release"
    monkeypatch.setenv("SORAE_QUEUE_PROBE_RELEASE", str(release))  # inherited by the run processes
    target = ModuleTarget(
        module_name="sorae_payouts_tests.queue_probe_defs",
        attribute=None,
        working_directory=str(Path(__file__).resolve().parents[1]),
        location_name=LOCATION,
    )
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        WorkspaceProcessContext(
            instance, target, version=dg.__version__, read_only=False, code_server_log_level="WARNING"
        ) as context,
    ):
        [rule] = [
            r
            for r in instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
            if r["key"] == ACCOUNT_TAG
        ]
        workspace = context.create_request_context()
        account_a = [_submit(instance, workspace, {ACCOUNT_TAG: "acct_A"}) for _ in range(rule["limit"] + 1)]
        account_b = _submit(instance, workspace, {ACCOUNT_TAG: "acct_B"})  # submitted after A's extra run
        assert {_status(instance, r) for r in [*account_a, account_b]} == {QUEUED}
        within_limit, beyond_limit = account_a[:-1], account_a[-1]
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        try:
            list(daemon.run_iteration(context))  # one tick of the queue
            assert _status(instance, beyond_limit) == QUEUED
            assert all(_status(instance, r) != QUEUED for r in [*within_limit, account_b])

            _wait_until(instance, within_limit, IN_PROGRESS, "started")
            list(daemon.run_iteration(context))  # A's runs still in progress: the extra one keeps waiting
            assert _status(instance, beyond_limit) == QUEUED

            release.touch()
            _wait_until(instance, [*within_limit, account_b], {dg.DagsterRunStatus.SUCCESS}, "succeeded")
            list(daemon.run_iteration(context))  # a slot of A is free now
            _wait_until(instance, [beyond_limit], {dg.DagsterRunStatus.SUCCESS}, "succeeded")
        finally:
            release.touch()  # never leave a probe process waiting
            # The code server must outlive the runs it started.
            _wait_until(
                instance, [*account_a, account_b], {s for s in dg.DagsterRunStatus if s not in IN_PROGRESS}, "ended"
            )
