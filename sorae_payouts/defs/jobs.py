"""Jobs: month-end finalization and manifest (execution comes with the Stripe issue)."""

import dagster as dg

month_end_job = dg.define_asset_job(
    name="month_end_job",
    selection=dg.AssetSelection.assets("finalized_commissions", "payout_manifest").without_checks()
    | dg.AssetSelection.checks_for_assets("payout_manifest"),
    description="Finalize the month's commissions and build its payout manifest (a draft to review).",
)
