"""Assembles the Dagster code location; everything it names lives in `sorae_payouts.defs`."""

import dagster as dg

from sorae_payouts.defs.assets import finalized_commissions, payout_manifest
from sorae_payouts.defs.checks import manifest_checks, transfers_reconciled
from sorae_payouts.defs.execution_assets import executed_transfers
from sorae_payouts.defs.jobs import month_end_job, payout_execution_job
from sorae_payouts.defs.resources import PayoutSettings, ledger_from_environment, stripe_from_environment
from sorae_payouts.defs.operations import approve_batch_job, payout_refresh_job, retry_items_job
from sorae_payouts.defs.reversals import recover_negative_balances_job, resolve_reversal_job, reversals_accounted
from sorae_payouts.defs.schedules import month_end_schedule, payout_refresh_schedule
from sorae_payouts.defs.sensors import approved_batch_sensor

defs = dg.Definitions(
    assets=[finalized_commissions, payout_manifest, executed_transfers],
    asset_checks=[*manifest_checks, transfers_reconciled, reversals_accounted],
    jobs=[month_end_job, payout_execution_job, approve_batch_job, retry_items_job, payout_refresh_job,
          resolve_reversal_job, recover_negative_balances_job],
    schedules=[month_end_schedule, payout_refresh_schedule],
    sensors=[approved_batch_sensor],
    resources={
        "ledger": ledger_from_environment(),
        "payout_settings": PayoutSettings(),
        "stripe": stripe_from_environment(),
    },
)
