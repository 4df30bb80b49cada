"""Reversals through Dagster: the decision job, the executed-transfers asset (recovery, reversal
columns) and the `reversals_accounted` check, on SQLite and PostgreSQL over the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.aftercare.reversals import sign_decision
from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts_tests.execution.conftest import API_KEY, make_gateway, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import OCT, items, operator_key, register_operators


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


def _resolve(engine, item_id, decision, reason=None, *, signed_as=None, **overrides):
    """The run config `reversals sign` prints: erin's decision signed with erin's key (`signed_as`: the
    decision that was signed, when the config claims another)."""
    register_operators(engine, "erin")
    kind, why = signed_as or (decision, reason)
    signed = sign_decision(
        engine, item_id, kind, program_id="default", key=operator_key("erin"), reason=why, now=datetime.now(UTC)
    )
    config = {"item_id": item_id, "program": "default", "decision": decision, "reason": reason}
    return {"ops": {"resolve_reversal_op": {"config": {**config, **signed.as_run_config(), **overrides}}}}


def _failure(result) -> str:
    return result.get_step_failure_events()[0].event_specific_data.error.message


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

    no_reason = _resolve(engine, item_id, "write_off", signed_as=("owe_again", None))
    assert not _run("resolve_reversal_job", ledger_url, sandbox, no_reason).success
    # A typed name decides nothing: the signature must be the named operator's, for this very decision.
    for forged in (
        _resolve(engine, item_id, "write_off", "chargeback", operator="tests"),
        _resolve(engine, item_id, "write_off", "chargeback", signature="A" * 88),
        _resolve(engine, item_id, "write_off", "chargeback", signed_as=("owe_again", None)),
    ):
        refused = _run("resolve_reversal_job", ledger_url, sandbox, forged)
        assert not refused.success and "the signature is not" in _failure(refused)
    other = _run(
        "resolve_reversal_job", ledger_url, sandbox, _resolve(engine, item_id, "write_off", "x", program="acme")
    )
    assert not other.success and "not an item of program acme" in _failure(other)
    signed = _resolve(engine, item_id, "write_off", "chargeback")
    assert _run("resolve_reversal_job", ledger_url, sandbox, signed).success
    with engine.connect() as conn:
        decision = conn.execute(
            sa.text("SELECT decision, amount_minor, decided_by, reason FROM reversal_decision")
        ).one()
    assert tuple(decision) == ("write_off", 1_000, "erin", "chargeback")
    again = _run("resolve_reversal_job", ledger_url, sandbox, signed)  # the same signed decision, replayed
    assert not again.success
    assert "nothing pending" in again.get_step_failure_events()[0].event_specific_data.error.message
