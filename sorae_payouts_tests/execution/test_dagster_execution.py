"""executed_transfers through Dagster, per program-month: refuses unapproved batches, reports item-level
outcomes, never puts an API key into events, logs or metadata; in a run over many programs, a program
that is unapproved, unfunded or failed its check is reported alone and the others are paid."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.partitions import ProgramMonth, range_tags
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts_tests.execution.conftest import (
    API_KEY,
    SECOND_KEY,
    add_program,
    assert_paid_exactly_once,
    charge,
    fund,
    make_gateway,
    sandbox_transfers,
    seed_batch,
)
from sorae_payouts_tests.factory import OCT, add_affiliate, add_commission, approve

CHECKS = ["finalized_rows_unchanged", "money_is_conserved", "one_item_per_affiliate_currency"]


def _resources(ledger_url, sandbox):
    return {
        "ledger": LedgerResource(database_url=ledger_url),
        "payout_settings": PayoutSettings(),
        "stripe": StripeResource(api_key=API_KEY, api_base=sandbox.url, rate_limit_per_second=500),
    }


def _execute(ledger_url, sandbox, instance, programs=("default",), job="payout_execution_job"):
    """One run: the partition of one program, or October x the programs (a range)."""
    instance.add_dynamic_partitions(
        "program", [p for p in programs if p not in instance.get_dynamic_partitions("program")]
    )
    one = len(programs) == 1
    tags = None if one else range_tags(ProgramMonth(OCT, programs[0]), ProgramMonth(OCT, programs[-1]))
    target = defs.resolve_job_def(job) if isinstance(job, str) else job
    return target.execute_in_process(
        partition_key=f"2026-10-01|{programs[0]}" if one else None,
        tags=tags,
        raise_on_error=False,
        instance=instance,
        resources=_resources(ledger_url, sandbox),
    )


def _materialized(result, node="execute_transfers") -> dict:
    return {str(m.partition): m.metadata for m in result.asset_materializations_for_node(node)}


def test_unapproved_batch_fails_without_sending_then_approved_batch_is_paid(engine, ledger_url, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, {"alice": 12_345, "bob": 6_000, "carol": 7_000}, approve=False)
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['carol']}", {"transfers": "pending"})
    with dg.instance_for_test() as instance:
        refused = _execute(ledger_url, sandbox, instance)
        assert not refused.success
        [failure] = refused.get_step_failure_events()
        assert "not approved" in failure.event_specific_data.error.message
        assert sandbox_transfers(stripe_client) == [] and _materialized(refused) == {}

        approve(engine, OCT, "ops")
        result = _execute(ledger_url, sandbox, instance)
        assert result.success
        meta = _materialized(result)["2026-10-01|default"]
        assert (meta["posted"].value, meta["held"].value, meta["batch_status"].value) == (
            2,
            1,
            "completed_with_exceptions",
        )
        assert meta["paying_account"].value.startswith("acct_") and meta["program"].value == "default"
        rows = {r.data["affiliate_id"]: r.data for r in meta["items"].value.records}
        assert rows["alice"]["dashboard"] == (
            f"https://dashboard.stripe.com/test/connect/transfers/{rows['alice']['transfer_id']}"
        )
        assert rows["carol"]["status"] == "held" and "pending" in rows["carol"]["error_code"]
        assert_paid_exactly_once(engine, stripe_client)
        logs = instance.all_logs(result.run_id) + instance.all_logs(refused.run_id)
        assert API_KEY not in "".join(str(e) for e in logs)


def test_unapproved_unfunded_programs_are_refused_alone_and_the_others_are_paid(
    engine, ledger_url, sandbox, stripe_client, second_platform
):
    gateway = make_gateway(sandbox)
    add_program(engine, "acme")  # shares the platform account: must be funded, is not
    add_program(engine, "beta")  # funded, never approved
    add_program(engine, "own", "env:ACME_STRIPE_KEY")  # pays from its own platform account
    seed_batch(engine, stripe_client, {"alice": 5_000})
    seed_batch(engine, stripe_client, {"alice": 6_000}, program_id="acme")
    seed_batch(engine, stripe_client, {"alice": 7_000}, program_id="beta", approve=False)
    seed_batch(engine, second_platform, {"alice": 8_000}, program_id="own")
    fund(engine, gateway, "default", charge_id=charge(stripe_client, 5_000))
    fund(engine, gateway, "beta", charge_id=charge(stripe_client, 7_000))
    with dg.instance_for_test() as instance:
        result = _execute(ledger_url, sandbox, instance, programs=("default", "acme", "beta", "own"))
    assert not result.success
    assert set(_materialized(result)) == {"2026-10-01|default", "2026-10-01|own"}
    message = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "2 of 4 program-months failed" in message and "(acme)" in message and "(beta)" in message
    checks = {(str(e.partition), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        (f"2026-10-01|{p}", c): True
        for p in ("default", "own")
        for c in ("transfers_reconciled", "reversals_accounted")
    }
    assert [t.amount for t in sandbox_transfers(stripe_client)] == [5_000]
    assert sandbox_transfers(stripe_client, "payout_acme_2026-10") == []
    assert sandbox_transfers(stripe_client, "payout_beta_2026-10") == []
    assert [t.amount for t in sandbox_transfers(second_platform, "payout_own_2026-10")] == [8_000]
    own = _materialized(result)["2026-10-01|own"]
    assert own["paying_account"].value != _materialized(result)["2026-10-01|default"]["paying_account"].value
    assert SECOND_KEY not in str(own) and API_KEY not in message


def test_one_programs_failing_check_leaves_the_others_paid(engine, ledger_url, sandbox, stripe_client):
    add_program(engine, "acme")
    for program in ("default", "acme"):
        account = stripe_client.v1.accounts.create(
            params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
        ).id
        add_affiliate(engine, "alice", account=account, program_id=program)
        add_commission(engine, "alice", 9_000, program_id=program)
    with dg.instance_for_test() as instance:
        built = _execute(ledger_url, sandbox, instance, programs=("default", "acme"), job="month_end_job")
        assert built.success and len(built.asset_materializations_for_node("month_end")) == 4
        with engine.begin() as conn:  # acme's draft edited by hand: its blocking checks catch it
            conn.execute(
                sa.text(
                    "UPDATE payout_item SET amount_minor = amount_minor + 1, period_amount_minor = "
                    "period_amount_minor + 1 WHERE program_id = 'acme'"
                )
            )
        checks_only = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_check_selection={dg.AssetCheckKey(dg.AssetKey("payout_manifest"), c) for c in CHECKS},
            asset_selection=set(),
        )
        checked = _execute(ledger_url, sandbox, instance, programs=("default", "acme"), job=checks_only)
        verdict = {(str(e.partition)[11:], e.check_name): e.passed for e in checked.get_asset_check_evaluations()}
        assert verdict == {
            **{("default", c): True for c in CHECKS},
            ("acme", "money_is_conserved"): False,
            ("acme", "finalized_rows_unchanged"): False,
            ("acme", "one_item_per_affiliate_currency"): True,
        }
        approve(engine, OCT, "ops")  # the default program's operators approve; acme's batch stays a draft
        fund(engine, make_gateway(sandbox), "default", charge_id=charge(stripe_client, 9_000))
        paid = _execute(ledger_url, sandbox, instance, programs=("default", "acme"))
    assert not paid.success and set(_materialized(paid)) == {"2026-10-01|default"}
    assert [t.amount for t in sandbox_transfers(stripe_client)] == [9_000]
    assert sandbox_transfers(stripe_client, "payout_acme_2026-10") == []
    assert_paid_exactly_once(engine, stripe_client)


def test_every_stripe_request_of_the_run_waits_on_the_accounts_shared_schedule(
    engine, ledger_url, sandbox, stripe_client
):
    """Two runs (or pods) paying from one account share its limit: the step's gateway books its slots
    in the ledger's `stripe_rate_schedule`, under the paying account's id, unless turned off."""
    seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 6_000})
    platform = stripe_client.v1.accounts.retrieve_current().id
    with dg.instance_for_test() as instance:
        assert _execute(ledger_url, sandbox, instance).success
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT paying_account, interval_us FROM stripe_rate_schedule")).all()
    assert [tuple(r) for r in rows] == [(platform, 2_060)]  # 500/s with the 3% margin: 2.06 ms apart

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM stripe_rate_schedule"))
    resources = _resources(ledger_url, sandbox)
    resources["stripe"] = StripeResource(
        api_key=API_KEY, api_base=sandbox.url, rate_limit_per_second=500, shared_rate_limit=False
    )  # SORAE_STRIPE_SHARED_LIMIT=0
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("program", ["default"])
        result = defs.resolve_job_def("payout_execution_job").execute_in_process(
            partition_key="2026-10-01|default", raise_on_error=False, instance=instance, resources=resources
        )
        assert result.success  # nothing left to pay; the group scan and checks still called Stripe
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM stripe_rate_schedule")).scalar_one() == 0
