"""Assembles the Dagster code location from one folder per area of `sorae_payouts.defs`; nothing is defined here."""

import dagster as dg

from sorae_payouts.defs.aftercare.jobs import payout_refresh_job, retry_items_job
from sorae_payouts.defs.aftercare.reversals import recover_negative_balances_job, resolve_reversal_job
from sorae_payouts.defs.aftercare.schedules import payout_refresh_schedule
from sorae_payouts.defs.execution.assets import execute_transfers
from sorae_payouts.defs.execution.jobs import payout_execution_job
from sorae_payouts.defs.execution.sensors import approved_batch_sensor
from sorae_payouts.defs.lib.resources import PayoutSettings, ledger_from_environment, stripe_from_environment
from sorae_payouts.defs.month_end.approval import approve_batch_job
from sorae_payouts.defs.month_end.assets import month_end
from sorae_payouts.defs.month_end.jobs import month_end_job
from sorae_payouts.defs.month_end.schedules import month_end_schedule
from sorae_payouts.defs.registry.sensors import program_partitions_sensor

defs = dg.Definitions(
    assets=[month_end, execute_transfers],
    jobs=[
        month_end_job,
        payout_execution_job,
        approve_batch_job,
        retry_items_job,
        payout_refresh_job,
        resolve_reversal_job,
        recover_negative_balances_job,
    ],
    schedules=[month_end_schedule, payout_refresh_schedule],
    sensors=[program_partitions_sensor, approved_batch_sensor],
    resources={
        "ledger": ledger_from_environment(),
        "payout_settings": PayoutSettings(),
        "stripe": stripe_from_environment(),
    },
)
