"""Execution verifies approvals itself, every run; the Dagster approval job names a registered
operator from run config or run tags. Sandbox over HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.execution.pay_batch import ExecutionRefused, execute_batch
from sorae_payouts_tests.execution.conftest import API_KEY, make_gateway, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import OCT, register_operators


def _drop_trigger(conn, name: str, table: str) -> None:
    conn.exec_driver_sql(f"DROP TRIGGER {name}" + ("" if conn.dialect.name == "sqlite" else f" ON {table}"))


def test_a_batch_approved_by_hand_pays_nothing_and_says_why(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 7_000}, approve=False)
    with engine.begin() as conn:  # the database refuses it...
        with pytest.raises(sa.exc.DBAPIError, match="registered approval"), conn.begin_nested():
            conn.exec_driver_sql("UPDATE payout_batch SET status = 'approved'")
        # ...so someone with DDL rights lifts the guard first (what least privilege takes away)
        _drop_trigger(conn, "guard_payout_batch_approved", "payout_batch")
        conn.exec_driver_sql("UPDATE payout_batch SET status = 'approved', approved_by = 'alice, bob'")
    with pytest.raises(ExecutionRefused, match="0 of the 1 approvals .* nothing was sent"):
        execute_batch(engine, make_gateway(sandbox), OCT)
    assert sandbox_transfers(stripe_client) == []
    with engine.connect() as conn:
        assert set(conn.execute(sa.text("SELECT status FROM payout_item")).scalars()) == {"pending"}
        assert conn.execute(sa.text("SELECT COUNT(*) FROM transfer_attempt")).scalar_one() == 0


def test_a_forged_approval_row_of_an_unknown_person_does_not_count(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000}, approve=False)
    with engine.begin() as conn:
        _drop_trigger(conn, "guard_batch_approval_operator", "batch_approval")
        conn.execute(
            sa.text(
                "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, "
                "operator_id) SELECT batch_id, 'mallory', built_at, manifest_hash, 'mallory' "
                "FROM payout_batch"
            )
        )
        conn.exec_driver_sql("UPDATE payout_batch SET status = 'approved'")
    with pytest.raises(ExecutionRefused, match="0 of the 1 approvals"):
        execute_batch(engine, make_gateway(sandbox), OCT)
    assert sandbox_transfers(stripe_client) == []


def _approve_job(ledger_url, sandbox, config: dict, tags: dict | None = None):
    resources = {
        "ledger": LedgerResource(database_url=ledger_url),
        "payout_settings": PayoutSettings(),
        "stripe": StripeResource(api_key=API_KEY, api_base=sandbox.url, rate_limit_per_second=500),
    }
    return defs.resolve_job_def("approve_batch_job").execute_in_process(
        run_config={"ops": {"approve_batch_op": {"config": config}}},
        tags=tags or {},
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources,
    )


def _failure(result) -> str:
    return result.get_step_failure_events()[0].event_specific_data.error.message


def test_approval_job_takes_the_operator_from_tags_or_config(engine, ledger_url, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000}, approve=False)
    with engine.connect() as conn:
        manifest_hash = conn.execute(sa.text("SELECT manifest_hash FROM payout_batch")).scalar_one()
    config = {"period": "2026-10", "manifest_hash": manifest_hash}
    unnamed = _approve_job(ledger_url, sandbox, config)
    assert not unnamed.success and "sorae/operator" in _failure(unnamed)
    unknown = _approve_job(ledger_url, sandbox, config, {"sorae/operator": "ana"})
    assert not unknown.success and "not a registered operator" in _failure(unknown)
    register_operators(engine, "ana", "ben")
    conflict = _approve_job(ledger_url, sandbox, {**config, "approved_by": "ben"}, {"sorae/operator": "ana"})
    assert not conflict.success and "names operator" in _failure(conflict)
    short = _approve_job(ledger_url, sandbox, {**config, "manifest_hash": "9"}, {"sorae/operator": "ana"})
    assert not short.success and "at least 12 hex" in _failure(short)
    approved = _approve_job(ledger_url, sandbox, config, {"sorae/operator": " ANA "})
    assert approved.success
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT operator_id, dagster_run_id, host FROM batch_approval")).one()
        assert (row.operator_id, row.dagster_run_id) == ("ana", approved.run_id) and row.host
        assert conn.execute(sa.text("SELECT status FROM payout_batch")).scalar_one() == "approved"
