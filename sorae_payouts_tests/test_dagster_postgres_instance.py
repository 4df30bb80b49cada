"""The production instance file (deploy/dagster.yaml: dagster-postgres storage from DAGSTER_PG_URL)
runs a partition materialization against a Postgres ledger."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import dagster as dg

from sorae_payouts.defs.resources import LedgerResource, PayoutSettings
from sorae_payouts.definitions import defs
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts_tests.conftest import _pg_admin, _pg_url, make_ledger_url
from sorae_payouts_tests.factory import add_affiliate, add_commission

DEPLOY_INSTANCE = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


def test_partition_materializes_on_postgres_instance_storage(tmp_path, request, monkeypatch):
    ledger_url = make_ledger_url("postgres", tmp_path, request)
    storage_db = f"sorae_dagster_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{storage_db}"')
    request.addfinalizer(lambda: _pg_admin(f'DROP DATABASE IF EXISTS "{storage_db}" WITH (FORCE)'))
    # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, whose
    # server-side binding breaks dagster's `NOTIFY run_events, %s`. Name the driver explicitly.
    monkeypatch.setenv("DAGSTER_PG_URL", _pg_url(storage_db).replace("postgresql://", "postgresql+psycopg2://"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")

    engine = create_ledger_engine(ledger_url)
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 60_000)
    engine.dispose()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("month_end_job").execute_in_process(
            partition_key="2026-10-01", instance=instance,
            resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()})
        assert result.success
        record = instance.get_latest_materialization_event(dg.AssetKey("payout_manifest"))
        assert record is not None and record.run_id == result.run_id
        assert record.asset_materialization.partition == "2026-10-01"
        assert all(e.passed for e in result.get_asset_check_evaluations())
