"""The month-end assets and their checks, run through Dagster on both ledger backends."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sorae_payouts.defs.resources import LedgerResource, PayoutSettings
from sorae_payouts.definitions import defs
from sorae_payouts_tests.factory import add_affiliate, add_commission, add_event

OCTOBER = "2026-10-01"


def _run(ledger_url: str, partition: str = OCTOBER, **settings):
    job = defs.resolve_job_def("month_end_job")
    return job.execute_in_process(
        partition_key=partition, raise_on_error=False, instance=dg.DagsterInstance.ephemeral(),
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings(**settings)})


def _seed(engine):
    add_affiliate(engine, "alice")
    add_affiliate(engine, "kenji", currency="jpy")
    order = add_commission(engine, "alice", 12_345)
    add_commission(engine, "alice", 100_000)
    add_event(engine, order, "partial_reversal", 2_345)
    add_commission(engine, "kenji", 4_000, currency="jpy")


def test_month_end_job_finalizes_builds_manifest_and_checks_pass(engine, ledger_url):
    _seed(engine)
    result = _run(ledger_url)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert sorted(e.check_name for e in evaluations) == [
        "finalized_rows_unchanged", "money_is_conserved", "one_item_per_affiliate_currency"]
    assert all(e.passed for e in evaluations)
    manifest = result.asset_materializations_for_node("payout_manifest")[0].metadata
    assert manifest["batch_status"].value == "draft" and manifest["item_count"].value == 2
    totals = {r.data["currency"]: r.data for r in manifest["totals_by_currency"].value.records}
    assert totals["usd"]["payable_minor"] == 110_000 and totals["jpy"]["carried_forward_minor"] == 4_000

    again = _run(ledger_url)
    finalize_meta = again.asset_materializations_for_node("finalized_commissions")[0].metadata
    assert finalize_meta["already_finalized"].value is True
    assert "already finalized; nothing changed" in finalize_meta["summary"].value


def test_holding_window_failure_names_the_date(engine, ledger_url):
    _seed(engine)
    result = _run(ledger_url, holding_days=60)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "cannot be finalized before 2026-12-31 00:00 UTC" in failure.event_specific_data.error.message


def test_tampered_manifest_fails_blocking_check(engine, ledger_url):
    _seed(engine)
    assert _run(ledger_url).success
    with engine.begin() as conn:  # a draft can be edited by hand: the checks are what catch it
        conn.execute(sa.text("UPDATE payout_item SET amount_minor = amount_minor + 1, "
                             "period_amount_minor = period_amount_minor + 1 WHERE currency = 'usd'"))
    result = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_check_selection={dg.AssetCheckKey(dg.AssetKey("payout_manifest"), "money_is_conserved"),
                               dg.AssetCheckKey(dg.AssetKey("payout_manifest"), "finalized_rows_unchanged")},
        asset_selection=set()).execute_in_process(
        partition_key=OCTOBER, raise_on_error=False, instance=dg.DagsterInstance.ephemeral(),
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()})
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["money_is_conserved"].passed
    assert not evaluations["finalized_rows_unchanged"].passed
    rows = evaluations["money_is_conserved"].metadata["rows"].value.records
    assert [r.data["difference_minor"] for r in rows if r.data["currency"] == "usd"] == [1]
