"""A DAGSTER_HOME holding a copy of the production instance file (deploy/dagster.yaml), its storage
in a throwaway PostgreSQL database that is dropped when the test ends."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from sorae_payouts_tests.conftest import IN_CI, PG_ADMIN_URL, _pg_admin, _pg_url

DEPLOY_INSTANCE = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


def production_dagster_home(tmp_path: Path, request, monkeypatch) -> Path:
    try:
        _pg_admin("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    storage_db = f"sorae_dagster_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{storage_db}"')
    request.addfinalizer(lambda: _pg_admin(f'DROP DATABASE IF EXISTS "{storage_db}" WITH (FORCE)'))
    # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, whose
    # server-side binding breaks dagster's `NOTIFY run_events, %s`. Name the driver explicitly.
    monkeypatch.setenv("DAGSTER_PG_URL", _pg_url(storage_db).replace("postgresql://", "postgresql+psycopg2://"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    return home
