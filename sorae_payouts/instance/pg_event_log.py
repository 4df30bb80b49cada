"""dagster-postgres's event log storage, with pooled connections: for runs that record thousands of events.

dagster-postgres 0.29 opens a new PostgreSQL connection for every statement of every event
(`NullPool`) and asks the catalog whether a table exists for every asset event (`has_table`). A month
end over 1,000 program-month partitions records ~2,000 planned events, 2,000 materializations and
3,000 check evaluations: measured on this 2-core machine, a run whose step does nothing spent ~110 s
in storage, ~33 s with this class (bench/README.md). It keeps one connection per process (what
dagster-postgres does for the webserver: `optimize_for_webserver`) and remembers which tables exist.
It also stores a planned check of a run over N partitions in O(N): Dagster 1.13.27 inserts one row
per partition and serializes the whole planned event (with its N partition keys) again for each row,
O(N^2) (~10 s for 3 checks x 1,000 programs); the rows written are the same.

Configure it in dagster.yaml instead of `storage: postgres:` (the run and schedule storages stay
dagster-postgres's own):

    event_log_storage:
      module: sorae_payouts.instance.pg_event_log
      class: PooledPostgresEventLogStorage
      config:
        postgres_url: {env: DAGSTER_PG_URL}

Every process that opens the instance (webserver, daemon, code server, run workers, CLI) imports it,
so it must be importable where sorae_payouts is installed; it relies on dagster-postgres internals
(`_engine`, `_token_provider`, `has_table`) of the pinned 0.29.27.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL = {"pool_size": 1, "max_overflow": 4, "pool_recycle": 3600, "pool_pre_ping": True}


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider=None,
    ):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT", **POOL)
        self._tables: dict[str, bool] = {}

    def has_table(self, table_name: str) -> bool:
        # Tables are created by `dagster instance migrate`, never dropped under a running process.
        if table_name not in self._tables:
            self._tables[table_name] = super().has_table(table_name)
        return self._tables[table_name]

    def _store_asset_check_evaluation_planned(self, event, event_id: int | None) -> None:
        planned = event.dagster_event.event_specific_data
        if planned.partitions_subset is None:
            return super()._store_asset_check_evaluation_planned(event, event_id)
        serialized = serialize_value(event)  # once, not once per partition
        common = dict(
            asset_key=planned.asset_key.to_string(),
            check_name=planned.check_name,
            run_id=event.run_id,
            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
            evaluation_event=serialized,
            evaluation_event_timestamp=self._event_insert_timestamp(event),
            evaluation_event_storage_id=event_id,
        )
        rows = [dict(common, partition=key) for key in planned.partitions_subset.get_partition_keys()]
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert().values(rows))

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
