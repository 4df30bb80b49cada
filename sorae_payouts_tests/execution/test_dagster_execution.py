"""executed_transfers through Dagster: refuses unapproved batches, reports item-level outcomes, and
never puts the API key into events, logs or metadata."""

from __future__ import annotations

import dagster as dg

from sorae_payouts.defs.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.definitions import defs
from sorae_payouts_tests.execution.conftest import API_KEY, assert_paid_exactly_once, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import NOW, OCT, approve


def _execute(ledger_url, sandbox, instance):
    return defs.resolve_job_def("payout_execution_job").execute_in_process(
        partition_key="2026-10-01", raise_on_error=False, instance=instance,
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings(),
                   "stripe": StripeResource(api_key=API_KEY, api_base=sandbox.url, rate_limit_per_second=500)})


def test_unapproved_batch_fails_without_sending_then_approved_batch_is_paid(engine, ledger_url, sandbox, stripe_client):
    accounts = seed_batch(engine, stripe_client, {"alice": 12_345, "bob": 6_000, "carol": 7_000}, approve=False)
    sandbox.admin("POST", f"/_sandbox/accounts/{accounts['carol']}", {"transfers": "pending"})
    with dg.instance_for_test() as instance:
        refused = _execute(ledger_url, sandbox, instance)
        assert not refused.success
        [failure] = refused.get_step_failure_events()
        assert "not approved" in failure.event_specific_data.error.message
        assert sandbox_transfers(stripe_client) == []

        approve(engine, OCT, "ops")
        result = _execute(ledger_url, sandbox, instance)
        assert result.success
        meta = result.asset_materializations_for_node("executed_transfers")[0].metadata
        assert (meta["posted"].value, meta["held"].value, meta["batch_status"].value) == (2, 1, "completed_with_exceptions")
        rows = {r.data["affiliate_id"]: r.data for r in meta["items"].value.records}
        assert rows["alice"]["dashboard"] == (
            f"https://dashboard.stripe.com/test/connect/transfers/{rows['alice']['transfer_id']}")
        assert rows["carol"]["status"] == "held" and "pending" in rows["carol"]["error_code"]
        assert_paid_exactly_once(engine, stripe_client)
        logs = instance.all_logs(result.run_id) + instance.all_logs(refused.run_id)
        assert API_KEY not in "".join(str(e) for e in logs)
