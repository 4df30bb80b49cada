"""Asset checks, declared on the steps that evaluate them (one evaluation per program-month partition).

- On payout_manifest, three BLOCKING checks: a failure stops the assets downstream in the same run.
  They are evaluated by the month-end step, for every program of the run at once, after the manifests
  are built; "Execute checks" in the UI (or a run selecting only the checks) evaluates them alone.
- On executed_transfers, the reconciliation with Stripe and the accounting of reversed money, evaluated
  by the execution step after each program's batch is paid.

Why inside the steps rather than separate check steps: a separate check step depends on its asset's
step; when a step over 1,000 programs fails because one program failed, Dagster skips the separate
check step for all of them. Inside the step, every program that got through is checked.
"""

from __future__ import annotations

import dagster as dg

from sorae_payouts.defs.lib.partitions import program_months

MANIFEST = dg.AssetKey("payout_manifest")
TRANSFERS = dg.AssetKey("executed_transfers")

MANIFEST_CHECK_DESCRIPTIONS = {
    "money_is_conserved": "Per currency, items (payable + carried forward) == finalized commissions, adjustments "
    "and clawbacks of the month + balances carried in from the program's previous batch.",
    "finalized_rows_unchanged": "The month's finalized commissions and adjustments still match their finalization "
    "snapshot, and every item's earned amount still matches them.",
    "one_item_per_affiliate_currency": "No affiliate has two payout items for one currency in the program's batch.",
}
manifest_check_specs = [
    dg.AssetCheckSpec(name, asset=MANIFEST, blocking=True, description=text, partitions_def=program_months)
    for name, text in MANIFEST_CHECK_DESCRIPTIONS.items()
]

transfers_check_specs = [
    dg.AssetCheckSpec(
        "transfers_reconciled",
        asset=TRANSFERS,
        partitions_def=program_months,
        description="The batch's transfers at Stripe (transfer group, on the program's paying account) "
        "match the ledger's posted attempts: same ids, amounts and count.",
    ),
    dg.AssetCheckSpec(
        "reversals_accounted",
        asset=TRANSFERS,
        partitions_def=program_months,
        description="Per currency: posted - reversed = net paid, and every reversed cent is pending a "
        "decision, owed again or written off.",
    ),
]
