"""The payout status refresh every 6 hours."""

import dagster as dg

from sorae_payouts.defs.aftercare.jobs import payout_refresh_job

payout_refresh_schedule = dg.ScheduleDefinition(
    job=payout_refresh_job,
    cron_schedule="15 */6 * * *",
    execution_timezone="UTC",
    # On out of the box: a month runs itself except for the human approval (pause it in the UI:
    # Automation -> payout_refresh_schedule -> toggle, or `dagster schedule stop payout_refresh_schedule`).
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Resolve unknown outcomes, record reversals and account readiness, pay what has cleared, "
    "then reconcile each batch with Stripe (every program).",
)
