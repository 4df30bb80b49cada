"""Assembles the Dagster code location; everything it names lives in `sorae_payouts.defs`."""

import dagster as dg

from sorae_payouts.defs.assets import finalized_commissions, payout_manifest
from sorae_payouts.defs.checks import manifest_checks
from sorae_payouts.defs.execution_assets import executed_transfers
from sorae_payouts.defs.jobs import month_end_job, payout_execution_job
from sorae_payouts.defs.resources import PayoutSettings, ledger_from_environment, stripe_from_environment
from sorae_payouts.defs.schedules import month_end_schedule

defs = dg.Definitions(
    assets=[finalized_commissions, payout_manifest, executed_transfers],
    asset_checks=manifest_checks,
    jobs=[month_end_job, payout_execution_job],
    schedules=[month_end_schedule],
    resources={
        "ledger": ledger_from_environment(),
        "payout_settings": PayoutSettings(),
        "stripe": stripe_from_environment(),
    },
)
