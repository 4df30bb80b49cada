"""Execution verifies approvals itself, every run; the Dagster approval job records only an approval
signed outside it with the operator's own key. Sandbox over HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.execution.pay_batch import ExecutionRefused, execute_batch
from sorae_payouts.month_end.approvals import sign_approval
from sorae_payouts_tests.execution.conftest import API_KEY, make_gateway, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import NOW, OCT, operator_key, register_operators


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
        _drop_trigger(conn, "guard_batch_approval_signed", "batch_approval")
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


def test_approval_job_records_only_a_signature_made_outside(engine, ledger_url, sandbox, stripe_client):
    """The webserver has no login: a typed name in the config or the tag approves nothing; the run config
    printed by `batch sign` (a signature bound to this program, batch and hash) does."""
    seed_batch(engine, stripe_client, {"alice": 5_000}, approve=False)
    register_operators(engine, "ana", "ben")
    with engine.connect() as conn:
        manifest_hash = conn.execute(sa.text("SELECT manifest_hash FROM payout_batch")).scalar_one()
    signed = sign_approval(engine, OCT, key=operator_key("ana"), now=NOW, expected_hash=manifest_hash)
    config = {"period": "2026-10", **signed.as_run_config()}
    typed = _approve_job(ledger_url, sandbox, {**config, "signature": "A" * 88})
    assert not typed.success and "the signature is not ana's" in _failure(typed)
    posing = _approve_job(ledger_url, sandbox, {**config, "operator": "ben"})  # ana's signature, ben's name
    assert not posing.success and "the signature is not ben's" in _failure(posing)
    conflict = _approve_job(ledger_url, sandbox, config, {"sorae/operator": "ben"})
    assert not conflict.success and "names 'ben' but the approval is signed by 'ana'" in _failure(conflict)
    short = _approve_job(ledger_url, sandbox, {**config, "manifest_hash": manifest_hash[:12]})
    assert not short.success and "full manifest hash" in _failure(short)
    later = _approve_job(ledger_url, sandbox, {**config, "approved_at": "2026-11-25T12:00:01+00:00"})
    assert not later.success and "the signature is not ana's" in _failure(later)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM batch_approval")).scalar_one() == 0
    approved = _approve_job(ledger_url, sandbox, config, {"sorae/operator": " ANA "})
    assert approved.success
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT operator_id, dagster_run_id, host, signature FROM batch_approval")).one()
        assert (row.operator_id, row.dagster_run_id, row.signature) == ("ana", approved.run_id, signed.signature)
        assert row.host and conn.execute(sa.text("SELECT status FROM payout_batch")).scalar_one() == "approved"
    replayed = _approve_job(ledger_url, sandbox, config)
    assert not replayed.success and "nothing to approve" in _failure(replayed)
