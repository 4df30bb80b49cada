"""What an operator job acts on: the run's program-month partition, else the period and program in its
run config (the launchpad's fields), with the same rules as the CLI's arguments."""

from sorae_payouts.core.periods import parse_period
from sorae_payouts.defs.lib.partitions import ProgramMonth, parse_partition
from sorae_payouts.month_end.batches import BatchError
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

PERIOD_HELP = "YYYY-MM; empty: the run's partition"


PROGRAM_HELP = f"The program ({DEFAULT_PROGRAM} when empty); empty on a partitioned run: the partition's"


def program_month(context, period: str | None, program: str | None) -> ProgramMonth:
    """The run's partition, else the config's period and program; both given, they must agree."""
    if context.has_partition_key:
        pm = parse_partition(context.partition_key)
        if (period and parse_period(period) != pm.period) or (program and program != pm.program_id):
            raise BatchError(f"run config names {period or ''} {program or ''} but the run's partition is {pm}")
        return pm
    if not period:
        raise BatchError("name the period in the run config, or launch the job on a partition")
    return ProgramMonth(parse_period(period), program or DEFAULT_PROGRAM)
