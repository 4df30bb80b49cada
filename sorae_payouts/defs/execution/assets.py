"""The execution asset: pays each program's APPROVED batch of a month through Stripe Connect.

One program-month per run when launched by the approval sensor or the CLI (tagged with the program
and its paying account, for the instance's tag concurrency limits); a backfill over many programs runs
them in one step (at most MAX_PARTITIONS_PER_RUN per run), each program's batch on its own, through
its own paying account's gateway: a program that is refused (not approved, unfunded, its items no
longer match the approved manifest, its paying account unusable) or whose sending fails is reported
for its partition and the others are paid. After each program's batch, its transfers are reconciled
with Stripe and its reversed money accounted for (the two checks, per partition).
"""

from datetime import UTC, datetime

import dagster as dg

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.heap import freeze_startup_heap
from sorae_payouts.defs.execution.metadata import execution_metadata
from sorae_payouts.defs.lib.checks import TRANSFERS, transfers_check_specs
from sorae_payouts.defs.lib.partitions import ProgramMonth, program_months, requested
from sorae_payouts.defs.lib.resources import LedgerResource, StripeResource
from sorae_payouts.defs.lib.step_results import StepResults, Stopwatch
from sorae_payouts.defs.month_end.assets import GROUP, MANIFEST
from sorae_payouts.month_end.audit import reversals_are_accounted
from sorae_payouts.use_cases import aftercare
from sorae_payouts.use_cases.payouts import pay_program_month

# Not single_run on purpose: a different policy from the month-end assets keeps the backfill daemon
# from putting execution in the same run as the manifest it would have to wait for (approval).
MAX_PARTITIONS_PER_RUN = 100


@dg.multi_asset(
    name="execute_transfers",
    specs=[
        dg.AssetSpec(
            TRANSFERS,
            deps=[MANIFEST],
            partitions_def=program_months,
            group_name=GROUP,
            kinds={"stripe", "python"},
            owners=["team:payments"],
            skippable=True,
            description=(
                "The program's Stripe Connect transfers of the month: one per payable item of its APPROVED batch, "
                "from the program's paying account. Only pending work is sent; posted and failed attempts are never "
                "re-sent; each idempotency key is committed before Stripe is called, so re-materializing finishes a "
                "batch without paying an item twice. Held items (accounts that cannot receive) stay pending."
            ),
        )
    ],
    check_specs=transfers_check_specs,
    can_subset=True,
    pool="stripe_api",
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
    # Safe because every item is idempotent on its own (claim -> call -> record): a retried step
    # resumes, it never re-sends a posted or failed attempt. Refusals are not retried.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
)
def execute_transfers(context: dg.AssetExecutionContext, ledger: LedgerResource, stripe: StripeResource):
    """Pay, reconcile and account for every program-month of the run (see the module docstring)."""
    results = StepResults(requested(context))
    freeze_startup_heap()  # short GC pauses while requests are paced to the millisecond (sorae_payouts.core.heap)
    _Execution(context, ledger, stripe, results).run()
    yield from results.events([TRANSFERS])
    if (failure := results.failure()) is not None:
        raise failure


class _Execution:
    def __init__(self, context, ledger: LedgerResource, stripe: StripeResource, results: StepResults):
        self.context, self.ledger, self.stripe, self.results = context, ledger, stripe, results
        self.pay = TRANSFERS in context.selected_asset_keys
        self.check_names = {k.name: k for k in context.selected_asset_check_keys}

    def run(self) -> None:
        gateways = self.stripe.gateways(self.ledger.engine)
        for pm in self.results.partitions:  # oldest month first; one program's failure never stops the others
            try:
                if self.pay:
                    self._pay(pm, gateways)
                if self.check_names:
                    self._check(pm, gateways)
            except PayoutRefused as exc:  # its reason, never retried (core/errors.py)
                self.results.fail(pm, str(exc))
            except Exception as exc:
                self.context.log.exception(f"{pm}: {exc.__class__.__name__}")
                self.results.fail(pm, f"{exc.__class__.__name__}: {exc}", retriable=True)

    def _pay(self, pm: ProgramMonth, gateways) -> None:
        payment = pay_program_month(
            self.ledger.engine,
            gateways,
            pm.period,
            pm.program_id,
            settings=self.stripe.execution_settings(),
            now=datetime.now(UTC),
            announce=self.context.log.warning,
        )
        report, recovery, gateway = payment.report, payment.recovery, payment.gateway
        for anomaly in report.anomalies:
            self.context.log.error(f"{pm}: {anomaly}")
        if recovery.requested or recovery.failed or recovery.unknown:
            self.context.log.info(f"{pm}: negative balance recovery: {recovery.as_json()}")
        self.context.log.info(f"{pm}: {report.batch_id} {report.outcome.status}, {report.sent} requests sent")
        with self.ledger.engine.connect() as conn:
            meta = execution_metadata(
                conn, report, pm.program_id, gateway.paying_account(), gateway.test_mode, full=self.results.single
            )
        self.results.materialize(TRANSFERS, pm, meta)

    def _check(self, pm: ProgramMonth, gateways) -> None:
        watch = Stopwatch()
        if "transfers_reconciled" in self.check_names:
            result = aftercare.reconcile(self.ledger.engine, gateways, pm)
            self.results.check(self.check_names["transfers_reconciled"], pm, result, watch.lap(), blocking=False)
        with self.ledger.engine.connect() as conn:
            if "reversals_accounted" in self.check_names:
                result = reversals_are_accounted(conn, pm.period, [pm.program_id])[pm.program_id]
                self.results.check(self.check_names["reversals_accounted"], pm, result, watch.lap(), blocking=False)
