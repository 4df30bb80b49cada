"""Jobs: month end (finalize + manifest + checks, drafts to review) and execution (approved batches only).
Both are partitioned by program-month (the partitions of their assets). Their runs carry `sorae/job`
(the instance's run queue limits month ends to one at a time: deploy/dagster.yaml)."""

import dagster as dg

month_end_job = dg.define_asset_job(
    name="month_end_job",
    selection=dg.AssetSelection.assets("finalized_commissions", "payout_manifest"),
    description="Finalize each program's month and build its payout manifest (a draft to review), then run the "
    "blocking checks; programs are independent: one that is refused or fails a check never stops the others.",
    executor_def=dg.in_process_executor,  # one step: no subprocess per step needed
    run_tags={"sorae/job": "month_end_job"},
)
