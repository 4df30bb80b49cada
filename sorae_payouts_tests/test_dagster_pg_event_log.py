"""The pooled event-log storage (sorae_payouts.instance.pg_event_log), as deploy/dagster.yaml configures it, on
a real PostgreSQL instance: a month end over several programs records, per program-month, the
materializations and one execution row per check that moved from PLANNED to its result, as
dagster-postgres's own storage records them."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.base import PartitionKeyFilter

from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.partitions import ProgramMonth, range_tags
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts_tests.conftest import make_ledger_url
from sorae_payouts_tests.dagster_pg_home import production_dagster_home
from sorae_payouts_tests.factory import OCT, add_affiliate, add_commission, add_program

PROGRAMS = ["default", "acme", "zeta"]


def test_pooled_storage_records_every_program_month_and_its_checks(tmp_path, request, monkeypatch):
    ledger_url = make_ledger_url("postgres", tmp_path, request)
    home = production_dagster_home(tmp_path, request, monkeypatch)  # deploy/dagster.yaml as shipped
    engine = create_ledger_engine(ledger_url)
    for program in PROGRAMS:
        if program != "default":
            add_program(engine, program)
        add_affiliate(engine, "alice", program_id=program)
        add_commission(engine, "alice", 70_000, program_id=program)
    engine.dispose()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
        instance.add_dynamic_partitions("program", PROGRAMS)
        result = defs.resolve_job_def("month_end_job").execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags=range_tags(ProgramMonth(OCT, PROGRAMS[0]), ProgramMonth(OCT, PROGRAMS[-1])),
            resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()},
        )
        assert result.success
        partitions = {f"2026-10-01|{p}" for p in PROGRAMS}
        for asset in ("finalized_commissions", "payout_manifest"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == partitions
        storage = instance.event_log_storage
        for name in ("money_is_conserved", "finalized_rows_unchanged", "one_item_per_affiliate_currency"):
            key = dg.AssetCheckKey(dg.AssetKey("payout_manifest"), name)
            for partition in partitions:
                [row] = storage.get_asset_check_execution_history(
                    key, limit=5, partition_filter=PartitionKeyFilter(key=partition)
                )
                assert (row.run_id, row.status) == (result.run_id, AssetCheckExecutionRecordStatus.SUCCEEDED)
                assert row.event.dagster_event.event_specific_data.partition == partition
            # Every planned row (one per partition, written in one statement) was updated, none left over.
            assert (
                storage.get_asset_check_execution_history(
                    key, limit=100, status={AssetCheckExecutionRecordStatus.PLANNED}
                )
                == []
            )
