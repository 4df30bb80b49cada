"""Every program registered in the ledger gets its `program` partition key (a dynamic-partitions request),
so adding a program needs no code change and no deploy."""

import dagster as dg

from sorae_payouts.defs.lib.partitions import PROGRAM, program_partitions
from sorae_payouts.defs.lib.resources import LedgerResource
from sorae_payouts.registry.programs import list_programs


def missing_program_keys(context, ledger: LedgerResource) -> list[str]:
    with ledger.engine.connect() as conn:
        registered = [p.program_id for p in list_programs(conn)]
    known = set(context.instance.get_dynamic_partitions(PROGRAM))
    return [p for p in registered if p not in known]


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Add the `program` partition key of every program registered in the ledger.",
)
def program_partitions_sensor(context: dg.SensorEvaluationContext, ledger: LedgerResource):
    missing = missing_program_keys(context, ledger)
    if not missing:
        return dg.SkipReason("every registered program has its partitions")
    context.log.info(f"adding program partitions: {', '.join(missing)}")
    return dg.SensorResult(dynamic_partitions_requests=[program_partitions.build_add_request(missing)])
