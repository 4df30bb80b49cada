"""The execution job: approved batches only, partitioned by program-month."""

import dagster as dg

payout_execution_job = dg.define_asset_job(
    name="payout_execution_job",
    selection=dg.AssetSelection.assets("executed_transfers"),
    description="Send the Stripe transfers of each program's APPROVED batch; only pending items are sent. Re-run "
    "it to finish a batch after a crash or a fix: it never pays an item twice.",
    executor_def=dg.in_process_executor,  # one step and its checks: no subprocess per step needed
    run_tags={"sorae/job": "payout_execution_job"},
)
