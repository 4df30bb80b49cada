"""The production instance file (deploy/dagster.yaml) loaded into a real instance on PostgreSQL:
its run queue, limits, launcher and monitoring as Dagster reads them back, and a partition
materialization against a Postgres ledger."""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.run_coordinator import QueuedRunCoordinator

from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts_tests.conftest import make_ledger_url
from sorae_payouts_tests.dagster_pg_home import production_dagster_home
from sorae_payouts_tests.factory import add_affiliate, add_commission


def _limit(limits, key):
    [rule] = [rule for rule in limits if rule["key"] == key]
    return rule


def test_production_instance_queues_runs_under_tag_limits(tmp_path, request, monkeypatch):
    home = production_dagster_home(tmp_path, request, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        # The pooled event log (bench/README.md: 54.9 s vs 177 s for 1,000 program partitions).
        assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, DefaultRunLauncher)  # one process per run

        queue = instance.get_concurrency_config().run_queue_config  # what the queue daemon enforces
        assert 1 <= queue.max_concurrent_runs <= 8, "sized for a 2-core box"
        per_account = _limit(queue.tag_concurrency_limits, "sorae/paying_account")
        assert per_account["value"] == {"applyLimitPerUniqueValue": True}
        assert 1 <= per_account["limit"] < queue.max_concurrent_runs
        month_end = _limit(queue.tag_concurrency_limits, "sorae/job")
        assert (month_end["value"], month_end["limit"]) == ("month_end_job", 1)
        assert queue.max_user_code_failure_retries >= 1
        # Stripe steps of two accounts x two runs; safe because each waits on its account's shared schedule.
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 4

        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert instance.run_monitoring_max_resume_run_attempts == 0
        # A dead worker gets one retry run; a failed step is never re-run wholesale by the instance.
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.get_settings("run_retries")["retry_on_asset_or_op_failure"] is False


def test_partition_materializes_on_postgres_instance_storage(tmp_path, request, monkeypatch):
    ledger_url = make_ledger_url("postgres", tmp_path, request)
    home = production_dagster_home(tmp_path, request, monkeypatch)

    engine = create_ledger_engine(ledger_url)
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 60_000)
    engine.dispose()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("program", ["default"])
        result = defs.resolve_job_def("month_end_job").execute_in_process(
            partition_key="2026-10-01|default",
            instance=instance,
            resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()},
        )
        assert result.success
        record = instance.get_latest_materialization_event(dg.AssetKey("payout_manifest"))
        assert record is not None and record.run_id == result.run_id
        assert record.asset_materialization.partition == "2026-10-01|default"
        assert all(e.passed for e in result.get_asset_check_evaluations())
