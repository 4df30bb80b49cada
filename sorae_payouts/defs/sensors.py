"""Sensors: an approved batch launches its execution (approval is the human gate)."""

import dagster as dg

from sorae_payouts.batches import list_batches
from sorae_payouts.defs.jobs import payout_execution_job
from sorae_payouts.defs.resources import LedgerResource


# On out of the box: approval is the human gate, execution follows it (pause: Automation -> toggle, or
# `dagster sensor stop approved_batch_sensor`).
@dg.sensor(job=payout_execution_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launch payout_execution_job for each newly approved batch.")
def approved_batch_sensor(context: dg.SensorEvaluationContext, ledger: LedgerResource):
    with ledger.engine.connect() as conn:
        approved = [b for b in list_batches(conn) if b.status == "approved"]
    if not approved:
        return dg.SkipReason("no approved batch waiting for execution")
    # The run key names the approved manifest: one launch per approval, however often the sensor ticks.
    return [dg.RunRequest(partition_key=b.period.isoformat(), run_key=f"{b.batch_id}:{b.manifest_hash}",
                          tags={"sorae/batch_id": b.batch_id, "sorae/approved_by": b.approved_by or ""})
            for b in approved]
