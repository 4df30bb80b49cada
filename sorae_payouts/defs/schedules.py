"""Schedules: month end on the 4th at 06:00 UTC (after the default 3-day holding window), and a
payout status refresh every 6 hours."""

import dagster as dg

from sorae_payouts.defs.jobs import month_end_job
from sorae_payouts.defs.operations import payout_refresh_job

month_end_schedule = dg.build_schedule_from_partitioned_job(
    month_end_job, hour_of_day=6, day_of_month=4, default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Finalize last month and build its manifest (a draft to review) once the holding window has passed.",
)

payout_refresh_schedule = dg.ScheduleDefinition(
    job=payout_refresh_job, cron_schedule="15 */6 * * *", execution_timezone="UTC",
    # On out of the box: a month runs itself except for the human approval (pause it in the UI:
    # Automation -> payout_refresh_schedule -> toggle, or `dagster schedule stop payout_refresh_schedule`).
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Resolve unknown outcomes, record reversals and account readiness, pay what has cleared, "
    "then reconcile each batch with Stripe.",
)
