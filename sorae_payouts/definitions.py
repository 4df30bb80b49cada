"""Assembles the Dagster code location; everything it names lives in `sorae_payouts.defs`."""

import dagster as dg

from sorae_payouts.defs.assets import month_end
from sorae_payouts.defs.execution_assets import execute_transfers
from sorae_payouts.defs.jobs import month_end_job, payout_execution_job
from sorae_payouts.defs.resources import PayoutSettings, ledger_from_environment, stripe_from_environment
from sorae_payouts.defs.operations import approve_batch_job, payout_refresh_job, retry_items_job
from sorae_payouts.defs.reversals import recover_negative_balances_job, resolve_reversal_job
from sorae_payouts.defs.schedules import month_end_schedule, payout_refresh_schedule
from sorae_payouts.defs.sensors import approved_batch_sensor, program_partitions_sensor

defs = dg.Definitions(
    assets=[month_end, execute_transfers],
    jobs=[month_end_job, payout_execution_job, approve_batch_job, retry_items_job, payout_refresh_job,
          resolve_reversal_job, recover_negative_balances_job],
    schedules=[month_end_schedule, payout_refresh_schedule],
    sensors=[program_partitions_sensor, approved_batch_sensor],
    resources={
        "ledger": ledger_from_environment(),
        "payout_settings": PayoutSettings(),
        "stripe": stripe_from_environment(),
    },
)
