"""Operator jobs, the approval sensor and the reconciliation check, through Dagster (program-month
partitions; the month-end schedule is in test_dagster_month_end.py)."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sorae_payouts.core.periods import parse_period
from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts.month_end.approvals import sign_approval
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.execution.conftest import (
    API_KEY,
    assert_paid_exactly_once,
    crash_after_stripe_call,
    item_states,
    make_gateway,
    seed_batch,
)
from sorae_payouts_tests.execution.test_operations import _fail_one
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_program,
    approve,
    build_manifest,
    finalize_period,
    operator_key,
    register_operators,
)


def _resources(ledger_url, sandbox):
    return {
        "ledger": LedgerResource(database_url=ledger_url),
        "payout_settings": PayoutSettings(),
        "stripe": StripeResource(api_key=API_KEY, api_base=sandbox.url, rate_limit_per_second=500),
    }


def _run(job, ledger_url, sandbox, config=None, partition=None):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("program", ["default"])
    return defs.resolve_job_def(job).execute_in_process(
        run_config=config or {},
        partition_key=partition,
        raise_on_error=False,
        instance=instance,
        resources=_resources(ledger_url, sandbox),
    )


def _approval(engine, period, by, reviewed, program_id="default", **config):
    """The run config `batch sign` prints: `by`'s approval signed with their own key."""
    signed = sign_approval(
        engine,
        parse_period(period),
        key=operator_key(by, program_id),
        now=NOW,
        expected_hash=reviewed,
        program_id=program_id,
    )
    return {"ops": {"approve_batch_op": {"config": {"period": period, **signed.as_run_config(), **config}}}}


def test_approval_job_needs_two_people_above_the_policy_amount(engine, ledger_url, sandbox):
    add_affiliate(engine, "whale")
    add_commission(engine, "whale", 20_000_000)  # 200,000.00 usd, above the 100,000.00 dual-approval amount
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    batch = build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "50.00"}, {"usd": "100000.00"}), now=NOW)
    register_operators(engine, "ana", "ben")
    short = _approval(engine, "2026-10", "ana", batch.manifest_hash, manifest_hash=batch.manifest_hash[:12])
    assert _run("approve_batch_job", ledger_url, sandbox, short).success is False
    first = _approval(engine, "2026-10", "ana", batch.manifest_hash[:12])
    assert _run("approve_batch_job", ledger_url, sandbox, first).success
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM payout_batch")).scalar_one() == "draft"
    same_person = _run(
        "approve_batch_job", ledger_url, sandbox, _approval(engine, "2026-10", "ana", batch.manifest_hash)
    )
    assert not same_person.success
    assert "someone else" in same_person.get_step_failure_events()[0].event_specific_data.error.message
    second = _run("approve_batch_job", ledger_url, sandbox, _approval(engine, "2026-10", "ben", batch.manifest_hash))
    assert second.success
    [observed] = [e.event_specific_data.asset_observation for e in second.all_events if e.is_asset_observation]
    assert observed.partition == "2026-10-01|default" and observed.metadata["batch_status"].value == "approved"
    assert "| ana |" in observed.metadata["approvals"].value and "| ben |" in observed.metadata["approvals"].value
    with engine.connect() as conn:
        assert tuple(conn.execute(sa.text("SELECT status, approved_by FROM payout_batch")).one()) == (
            "approved",
            "ana, ben",
        )


def test_retry_job_dry_run_changes_nothing_then_pays(engine, ledger_url, sandbox, stripe_client):
    accounts = _fail_one(engine, sandbox, stripe_client)  # alice posted; bob's transfer refused (account_invalid)
    config = {"ops": {"retry_items_op": {"config": {"period": "2026-10", "dry_run": True}}}}
    assert _run("retry_items_job", ledger_url, sandbox, config).success
    assert item_states(engine)["bob"][0] == "failed"
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['bob']}", {"invalid": False})
    config["ops"]["retry_items_op"]["config"]["dry_run"] = False
    assert _run("retry_items_job", ledger_url, sandbox, config).success
    assert item_states(engine)["bob"] == ("posted", None)
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 2


def test_refresh_job_resolves_unknown_outcomes(engine, ledger_url, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000})
    crash_after_stripe_call(engine, sandbox, {"alice"})
    assert _run("payout_refresh_job", ledger_url, sandbox).success
    assert item_states(engine)["alice"] == ("posted", None)
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 1


def test_execution_run_reconciles_and_the_check_catches_drift(engine, ledger_url, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, {"alice": 5_000})
    result = _run("payout_execution_job", ledger_url, sandbox, partition="2026-10-01|default")
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "transfers_reconciled"]
    assert (check.check_name, check.passed) == ("transfers_reconciled", True)
    stripe_client.v1.transfers.create(
        params={"amount": 1, "currency": "usd", "destination": accounts["alice"], "transfer_group": "payout_2026-10"}
    )
    again = _run("payout_execution_job", ledger_url, sandbox, partition="2026-10-01|default")
    [check] = [c for c in again.get_asset_check_evaluations() if c.check_name == "transfers_reconciled"]
    assert not check.passed and check.metadata["rows"].value.records[0].data["drift"] == "unknown_to_ledger"


def test_sensor_requests_execution_once_per_approved_manifest(engine, ledger_url, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000}, approve=False)
    sensor = defs.resolve_sensor_def("approved_batch_sensor")
    # With an instance_ref, as the sensor daemon evaluates it: the run request's partition is resolved
    # against the program keys the instance will have once the tick's dynamic-partition request is applied.
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance,
            instance_ref=instance.get_ref(),
            resources=_resources(ledger_url, sandbox),
            definitions=defs,
        ) as context,
    ):
        assert isinstance(sensor.evaluate_tick(context).skip_message, str)
        batch = approve(engine, OCT, "ops").batch
        tick = sensor.evaluate_tick(context)
        [request] = tick.run_requests
        assert (
            request.partition_key == "2026-10-01|default" and request.run_key == f"payout_2026-10:{batch.manifest_hash}"
        )
        account = make_gateway(sandbox).paying_account()
        assert (request.tags["sorae/program"], request.tags["sorae/paying_account"]) == ("default", account)
        # The program's partition key is added with the request (the instance had none).
        assert [list(r.partition_keys) for r in tick.dynamic_partitions_requests] == [["default"]]
        execute_batch(engine, make_gateway(sandbox), OCT)
        assert sensor.evaluate_tick(context).run_requests == []  # executed: nothing more to launch


def test_approval_job_on_a_partition_takes_the_program_from_it(engine, ledger_url, sandbox):
    add_program(engine, "acme")
    add_affiliate(engine, "alice", program_id="acme")
    add_commission(engine, "alice", 20_000, program_id="acme")
    finalize_period(engine, OCT, now=NOW, holding_days=3, program_id="acme")
    batch = build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "50.00"}), now=NOW, program_id="acme")
    register_operators(engine, "ana", program_id="acme")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("program", ["default", "acme"])
    config = _approval(engine, "2026-10", "ana", batch.manifest_hash, program_id="acme")
    del config["ops"]["approve_batch_op"]["config"]["period"]  # the partition names the program-month
    result = defs.resolve_job_def("approve_batch_job").execute_in_process(
        run_config=config,
        partition_key="2026-10-01|acme",
        raise_on_error=False,
        instance=instance,
        resources=_resources(ledger_url, sandbox),
    )
    assert result.success
    [observed] = [e.event_specific_data.asset_observation for e in result.all_events if e.is_asset_observation]
    assert observed.partition == "2026-10-01|acme"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT program_id, status FROM payout_batch")).all() == [("acme", "approved")]
