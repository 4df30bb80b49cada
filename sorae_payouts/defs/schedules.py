"""Schedules: month end runs on the 4th at 06:00 UTC, after the default 3-day holding window."""

import dagster as dg

from sorae_payouts.defs.jobs import month_end_job

month_end_schedule = dg.build_schedule_from_partitioned_job(
    month_end_job, hour_of_day=6, day_of_month=4,
    description="Finalize last month and build its manifest once the holding window has passed.",
)
