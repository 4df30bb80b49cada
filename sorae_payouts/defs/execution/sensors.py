"""Sensors: every registered program gets its partitions; an approved batch launches its execution.

Both add the `program` partition keys the instance lacks (a dynamic-partitions request, applied before
the sensor's run requests), so adding a program needs no code change and no deploy.
"""

import dagster as dg

from sorae_payouts.defs.execution.jobs import payout_execution_job
from sorae_payouts.defs.lib.partitions import partition_key, program_partitions
from sorae_payouts.defs.lib.resources import LedgerResource, StripeResource
from sorae_payouts.defs.lib.tags import TAG_PAYING_ACCOUNT, TAG_PROGRAM, PayingAccounts
from sorae_payouts.defs.registry.sensors import missing_program_keys
from sorae_payouts.month_end.batches import list_batches
from sorae_payouts.registry.programs import list_programs


# On out of the box: approval is the human gate, execution follows it (pause: Automation -> toggle, or
# `dagster sensor stop approved_batch_sensor`).
@dg.sensor(
    job=payout_execution_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch payout_execution_job for each newly approved batch, one run per program-month, tagged "
    "with its program and paying account.",
)
def approved_batch_sensor(context: dg.SensorEvaluationContext, ledger: LedgerResource, stripe: StripeResource):
    missing = missing_program_keys(context, ledger)
    with ledger.engine.connect() as conn:
        approved = list_batches(conn, None, status="approved")
        programs = {p.program_id: p for p in list_programs(conn)}
    if not approved:
        return dg.SkipReason("no approved batch waiting for execution")
    accounts = PayingAccounts(stripe)
    # The run key names the approved manifest: one launch per approval, however often the sensor ticks.
    requests = [
        dg.RunRequest(
            partition_key=str(partition_key(b.period, b.program_id)),
            run_key=f"{b.batch_id}:{b.manifest_hash}",
            tags={
                "sorae/batch_id": b.batch_id,
                "sorae/approved_by": b.approved_by or "",
                TAG_PROGRAM: b.program_id,
                TAG_PAYING_ACCOUNT: accounts.tag(programs[b.program_id]),
            },
        )
        for b in approved
    ]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[program_partitions.build_add_request(missing)] if missing else [],
    )
