"""Schedules: month end for every program on the 4th at 06:00 UTC (after the default 3-day holding
window), and a payout status refresh every 6 hours.

The month-end tick asks for ONE run over last month x every program partition (a range from the first
to the last `program` key: `dagster/asset_partition_range_start/end` tags, no partition key). Verified
on 1.13.27: the scheduler daemon launches such a request as one run whose step sees every program-month
of the range. A schedule built by `build_schedule_from_partitioned_job` would ask for a single
partition, and one run per program would pay Dagster's run start-up 1,000 times. Programs the ledger
has disabled are skipped by the run; a program that fails never stops the others.
"""

from datetime import UTC, datetime

import dagster as dg

from sorae_payouts.core.periods import parse_period, period_key
from sorae_payouts.defs.lib.partitions import PROGRAM, ProgramMonth, monthly_partitions, range_tags
from sorae_payouts.defs.month_end.jobs import month_end_job


@dg.schedule(
    name="month_end_job_schedule",
    job=month_end_job,
    cron_schedule="0 6 4 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Finalize last month and build its manifest (drafts to review) for every program, in one run, once "
    "the holding window has passed.",
)
def month_end_schedule(context: dg.ScheduleEvaluationContext):
    tick = context.scheduled_execution_time or datetime.now(UTC)
    windows = monthly_partitions.get_partition_keys(current_time=tick)
    programs = context.instance.get_dynamic_partitions(PROGRAM)
    if not windows or not programs:
        return dg.SkipReason(
            "no month has ended yet"
            if not windows
            else "no program partitions yet (program_partitions_sensor adds them)"
        )
    month = parse_period(windows[-1])  # the last complete month
    tags = range_tags(ProgramMonth(month, programs[0]), ProgramMonth(month, programs[-1]))
    # run_key: one run per month, however often the tick is evaluated again.
    return dg.RunRequest(run_key=f"month_end:{period_key(month)}", tags=tags)
