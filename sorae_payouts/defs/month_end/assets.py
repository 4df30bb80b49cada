"""Month end: finalized_commissions -> payout_manifest (+ its three blocking checks), per program-month.

One step (a subsettable multi-asset) does the month end of every program-month of its run, month by
month oldest first, each month for all its programs at once (set-based domain calls): finalize, then
build the manifests of the programs that finalized, then check the manifests that were built. A
program that is refused (holding window, out of order, unknown) drops out alone; the others go on,
are materialized and checked; the step fails at the end naming the programs that failed. Disabled
programs are skipped (their partitions stay visible, nothing is written for them).

Backfill policy: single run. The monthly schedule runs month M x every program as ONE run; a UI
backfill of one month x any programs is one run too (two months x many programs: one run per month,
see docs/architecture.md). Selecting only payout_manifest rebuilds drafts; selecting only the checks
evaluates them.
"""

from datetime import UTC, datetime

import dagster as dg

from sorae_payouts.core.periods import period_key
from sorae_payouts.defs.lib.checks import MANIFEST, manifest_check_specs
from sorae_payouts.defs.lib.partitions import ProgramMonth, by_month, program_months, requested
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.defs.lib.step_results import StepResults, Stopwatch
from sorae_payouts.defs.month_end.metadata import (
    CSV_PARTITIONS_MAX,
    finalize_metadata,
    full_manifest_metadata,
    manifest_metadata,
    with_manifest_csv,
)
from sorae_payouts.month_end.audit import manifest_checks
from sorae_payouts.month_end.finalize import finalize_programs
from sorae_payouts.month_end.manifest_build import build_manifests
from sorae_payouts.use_cases.month_end import admit_month_end, unpaid_checker

GROUP = "payouts"
FINALIZED = dg.AssetKey("finalized_commissions")
MONTH_END_BACKFILL = dg.BackfillPolicy.single_run()
_COMMON = dict(
    partitions_def=program_months,
    group_name=GROUP,
    kinds={"python", "sql"},
    owners=["team:payments"],
    code_version="2",
    skippable=True,
)

month_end_specs = [
    dg.AssetSpec(
        FINALIZED,
        **_COMMON,
        description=(
            "The program's commissions of the month, adjusted by order events and locked. Once the month has "
            "ended and the program's holding window for late reversals has passed, cancellations and reversals "
            "are applied and the month is finalized: its commissions become immutable (enforced by the ledger); "
            "later events become clawbacks netted against a later payout. Re-materializing changes nothing."
        ),
    ),
    dg.AssetSpec(
        MANIFEST,
        deps=[FINALIZED],
        **_COMMON,
        description=(
            "The program's payout batch of the month: one item per affiliate and currency, to be reviewed and "
            "approved. Earnings plus the balance carried from the program's previous batch; amounts under the "
            "minimum and negative balances carry forward. A rebuildable draft until approved, then frozen."
        ),
    ),
]


@dg.multi_asset(
    name="month_end",
    specs=month_end_specs,
    check_specs=manifest_check_specs,
    can_subset=True,
    backfill_policy=MONTH_END_BACKFILL,
)
def month_end(
    context: dg.AssetExecutionContext, ledger: LedgerResource, payout_settings: PayoutSettings, stripe: StripeResource
):
    """Finalize, build and check every program-month of the run (see the module docstring)."""
    results = StepResults(requested(context))
    _MonthEnd(context, ledger, payout_settings, results, stripe).run()
    yield from results.events([FINALIZED, MANIFEST])
    if (failure := results.failure()) is not None:
        raise failure


class _MonthEnd:
    def __init__(
        self, context, ledger: LedgerResource, settings: PayoutSettings, results: StepResults, stripe: StripeResource
    ):
        self.context, self.ledger, self.settings, self.results = context, ledger, settings, results
        self.stripe = stripe  # asked only when a program has unpaid items to carry (month_end/carry_check)
        self.selected = context.selected_asset_keys
        self.check_keys = sorted(context.selected_asset_check_keys, key=lambda k: k.name)
        self.now = datetime.now(UTC)
        self.built: dict[ProgramMonth, object] = {}
        self.blocked: dict[str, str] = {}  # program -> its month whose blocking check failed in this run

    def run(self) -> None:
        open_ = self._admit()
        for period, program_ids in by_month(open_).items():  # oldest first: each month needs the previous one
            ids = [p for p in program_ids if self._may_go_on(ProgramMonth(period, p))]
            if FINALIZED in self.selected:
                ids = self._finalize(period, ids)
            if MANIFEST in self.selected:
                ids = self._build(period, ids)
            if self.check_keys and ids:
                self._check(period, ids)
        self._views()

    def _may_go_on(self, pm: ProgramMonth) -> bool:
        """A program's later months stop behind its month that failed, or whose blocking check failed."""
        if pm in self.results.failed or pm in self.results.skipped:
            return False
        earlier = [f for f in self.results.failed if f.program_id == pm.program_id and f.period < pm.period]
        if earlier:
            self.results.fail(pm, f"not closed: {period_key(min(earlier).period)} failed in this run")
            return False
        if pm.program_id in self.blocked:
            self.results.fail(pm, f"not closed: a blocking check of {self.blocked[pm.program_id]} failed in this run")
            return False
        return True

    def _admit(self) -> list[ProgramMonth]:
        """The use case decides (`use_cases.month_end.admit_month_end`): unknown programs and months out of
        order fail before anything is written, disabled programs are skipped (logged), the others go on."""
        with self.ledger.engine.connect() as conn:
            admission = admit_month_end(conn, self.results.partitions, check_order=bool(self.selected))
        for pm, why in admission.refused.items():
            self.results.fail(ProgramMonth(*pm), why)
        for pm, why in admission.skipped.items():
            self.results.skip(ProgramMonth(*pm), why)
        if admission.skipped:
            self.context.log.warning(
                f"skipped {len(admission.skipped)} program-months of disabled programs: "
                + ", ".join(str(pm) for pm in list(admission.skipped)[:20])
            )
        return [ProgramMonth(*pm) for pm in admission.admitted]

    def _finalize(self, period, ids: list[str]) -> list[str]:
        watch = Stopwatch()
        outcomes = finalize_programs(
            self.ledger.engine, period, ids, now=self.now, holding_days=self.settings.holding_days
        )
        seconds = watch.lap()
        for program_id, why in outcomes.refused.items():
            self.results.fail(ProgramMonth(period, program_id), why)
        for program_id, report in outcomes.reports.items():
            self.results.materialize(
                FINALIZED, ProgramMonth(period, program_id), finalize_metadata(report, program_id, seconds, len(ids))
            )
        already = sum(1 for r in outcomes.reports.values() if r.already_finalized)
        self.context.log.info(
            f"{period_key(period)}: {len(outcomes.reports)} programs finalized ({already} already), "
            f"{len(outcomes.refused)} refused, in {seconds} s"
        )
        return [p for p in ids if p in outcomes.reports]

    def _build(self, period, ids: list[str]) -> list[str]:
        watch = Stopwatch()
        outcomes = build_manifests(
            self.ledger.engine,
            period,
            ids,
            policy=self.settings.policy,
            now=self.now,
            unpaid_check=unpaid_checker(lambda: self.stripe.gateways(self.ledger.engine)),
        )
        seconds = watch.lap()
        for program_id, why in outcomes.refused.items():
            self.results.fail(ProgramMonth(period, program_id), why)
        for program_id, report in outcomes.reports.items():
            pm = ProgramMonth(period, program_id)
            self.built[pm] = report
            self.results.materialize(MANIFEST, pm, manifest_metadata(report, program_id, seconds, len(ids)))
        self.context.log.info(
            f"{period_key(period)}: {len(outcomes.reports)} manifests built, "
            f"{len(outcomes.refused)} refused, in {seconds} s"
        )
        return [p for p in ids if p in outcomes.reports]

    def _check(self, period, ids: list[str]) -> None:
        watch = Stopwatch()
        with self.ledger.engine.connect() as conn:
            by_program = manifest_checks(conn, period, ids)
        seconds = watch.lap()
        failed = 0
        for program_id, by_name in by_program.items():
            for key in self.check_keys:
                result = by_name[key.name]
                failed += not result.passed
                if not result.passed:
                    self.blocked.setdefault(program_id, period_key(period))
                self.results.check(key, ProgramMonth(period, program_id), result, seconds, blocking=True)
        (self.context.log.error if failed else self.context.log.info)(
            f"{period_key(period)}: {len(self.check_keys)} checks x {len(by_program)} programs, {failed} failed, "
            f"in {seconds} s"
        )

    def _views(self) -> None:
        """The item pages for a one-partition run; the CSV files while the run is small."""
        metas = self.results.materialized.get(MANIFEST, {})
        for pm, report in self.built.items():
            if self.results.single:
                metas[pm] = full_manifest_metadata(self.ledger, report, pm.program_id, metas[pm])
            elif len(self.results.partitions) <= CSV_PARTITIONS_MAX:
                metas[pm] = with_manifest_csv(self.ledger, report, metas[pm])
