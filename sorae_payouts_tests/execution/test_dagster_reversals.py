"""Reversals through Dagster: the decision job, the executed-transfers asset (recovery, reversal
columns) and the `reversals_accounted` check, on SQLite and PostgreSQL over the sandbox."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts_tests.execution.conftest import API_KEY, make_gateway, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import OCT, items


def _run(job, ledger_url, sandbox, config=None, partition=None):
    resources = {
        "ledger": LedgerResource(database_url=ledger_url),
        "payout_settings": PayoutSettings(),
        "stripe": StripeResource(api_key=API_KEY, api_base=sandbox.url, rate_limit_per_second=500),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("program", ["default"])
    return defs.resolve_job_def(job).execute_in_process(
        run_config=config or {}, partition_key=partition, raise_on_error=False, instance=instance, resources=resources
    )


def _resolve(item_id, decision, reason=None):
    return {
        "ops": {
            "resolve_reversal_op": {
                "config": {"item_id": item_id, "decision": decision, "decided_by": "erin", "reason": reason}
            }
        }
    }


def test_resolve_job_and_check_after_a_reversal(engine, ledger_url, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 4_000})
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    [transfer] = sandbox_transfers(stripe_client)
    stripe_client.v1.transfers.reversals.create(transfer.id, params={"amount": 1_000})
    refresh_batch(engine, gateway, OCT)
    item_id = int(items(engine, "payout_2026-10")[("alice", "usd")]["payout_item_id"])

    # The asset shows the reversal waiting for a decision; the check passes (pending is accounted for).
    executed = _run("payout_execution_job", ledger_url, sandbox, partition="2026-10-01|default")
    assert executed.success
    [materialization] = executed.asset_materializations_for_node("execute_transfers")
    assert materialization.metadata["reversal_pending"].value == 1
    checks = {e.check_name: e for e in executed.get_asset_check_evaluations()}
    assert checks["reversals_accounted"].passed and checks["transfers_reconciled"].passed
    assert "await a decision" in checks["reversals_accounted"].metadata["summary"].value

    assert not _run("resolve_reversal_job", ledger_url, sandbox, _resolve(item_id, "write_off")).success  # no reason
    assert _run("resolve_reversal_job", ledger_url, sandbox, _resolve(item_id, "write_off", "chargeback")).success
    with engine.connect() as conn:
        decision = conn.execute(
            sa.text("SELECT decision, amount_minor, decided_by, reason FROM reversal_decision")
        ).one()
    assert tuple(decision) == ("write_off", 1_000, "erin", "chargeback")
    again = _run("resolve_reversal_job", ledger_url, sandbox, _resolve(item_id, "owe_again"))
    assert not again.success
    assert "nothing pending" in again.get_step_failure_events()[0].event_specific_data.error.message
