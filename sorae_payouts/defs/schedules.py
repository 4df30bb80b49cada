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
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Resolve unknown outcomes, record reversals and account readiness (turn on in production).",
)
