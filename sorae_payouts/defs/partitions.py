"""Monthly commission periods as Dagster partitions (keys are month starts, "2026-10-01", UTC)."""

import dagster as dg

from sorae_payouts.periods import first_period

# The first partition is the ledger's first period (SORAE_FIRST_PERIOD), the same bound the import
# puts on dates: no month shows up that the ledger cannot hold. end_offset=0: only months that have ended are partitions; the holding window is enforced by the
# finalization itself, with a message naming the date.
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=first_period().isoformat(), timezone="UTC", end_offset=0)

# Each period builds on the previous one (carried balances, clawbacks), so backfills run in order.
previous_month = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1,
                                               allow_nonexistent_upstream_partitions=True)
