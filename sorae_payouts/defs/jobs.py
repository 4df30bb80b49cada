"""Jobs: month end (finalize + manifest, a draft to review) and execution (an approved batch only)."""

import dagster as dg

month_end_job = dg.define_asset_job(
    name="month_end_job",
    selection=dg.AssetSelection.assets("finalized_commissions", "payout_manifest").without_checks()
    | dg.AssetSelection.checks_for_assets("payout_manifest"),
    description="Finalize the month's commissions and build its payout manifest (a draft to review).",
)

payout_execution_job = dg.define_asset_job(
    name="payout_execution_job",
    selection=dg.AssetSelection.assets("executed_transfers"),
    description="Send the Stripe transfers of an APPROVED batch; only pending items are sent. Re-run it "
    "to finish a batch after a crash or a fix: it never pays an item twice.",
    executor_def=dg.in_process_executor,  # one step and its check: no subprocess per step needed
)
