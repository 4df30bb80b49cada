"""Operator jobs for people who live in the Dagster UI (launchpad config), with the CLI's rules.

Approve and retry act on one program-month: the run's partition ("2026-10-01|acme") when launched on
one, else `period` (+ `program`, default `default`) from the run config. Refresh covers every program
(or one), each through its own paying account.
"""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from sorae_payouts.core.periods import parse_period
from sorae_payouts.defs.lib.partitions import program_months
from sorae_payouts.defs.lib.refusals import refusal_fails_the_step
from sorae_payouts.defs.lib.resources import LedgerResource, StripeResource
from sorae_payouts.defs.lib.run_config import PERIOD_HELP, PROGRAM_HELP, program_month
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.use_cases import aftercare, payouts


class RetryConfig(dg.Config):
    period: str | None = Field(default=None, description=PERIOD_HELP)
    program: str | None = Field(default=None, description=PROGRAM_HELP)
    item_ids: list[int] = Field(default_factory=list, description="Items to retry; empty: all failed items")
    error_code: str | None = Field(default=None, description="Only failed items with this Stripe error code")
    dry_run: bool = Field(default=True, description="Only list what would be sent")


@dg.op(pool="stripe_api")
def retry_items_op(
    context: dg.OpExecutionContext, config: RetryConfig, ledger: LedgerResource, stripe: StripeResource
) -> None:
    """Give the chosen failed items a new attempt and send only them; refusals are logged."""
    with refusal_fails_the_step():
        pm = program_month(context, config.period, config.program)
    with refusal_fails_the_step():  # the next keys name the paying account (GET /v1/account)
        request = payouts.plan_retry_of(
            ledger.engine,
            stripe.gateways(ledger.engine),
            pm.period,
            pm.program_id,
            item_ids=config.item_ids or None,
            error_code=config.error_code,
        )
    plan = request.plan
    for refused in plan.refused:
        context.log.warning(f"item {refused['payout_item_id']} refused: {refused['reason']}")
    for item in plan.retry:
        context.log.info(
            f"{'would send' if config.dry_run else 'retrying'} item {item['payout_item_id']} "
            f"({item['affiliate_id']}, {item['amount_minor']} {item['currency']}) with key "
            f"{item['next_idempotency_key']}"
        )
    if config.dry_run or not plan.retry:
        return
    with refusal_fails_the_step():
        report = payouts.send_retry(
            ledger.engine,
            request,
            now=datetime.now(UTC),
            settings=stripe.execution_settings(),
            announce=context.log.warning,
            requested_by=f"dagster run {context.run_id}",
        )
    context.log.info(
        f"{report.batch_id}: {report.outcome.count(ItemStatus.POSTED)} posted, "
        f"{report.outcome.count(ItemStatus.FAILED)} failed after retry"
    )


@dg.job(
    partitions_def=program_months, description="Retry failed items in isolation (same rules as `sorae-payouts retry`)."
)
def retry_items_job():
    retry_items_op()


class RefreshConfig(dg.Config):
    period: str | None = Field(default=None, description="YYYY-MM; empty: every executed batch")
    program: str | None = Field(default=None, description="One program; empty: every program")


@dg.op(pool="stripe_api")
def refresh_payouts_op(
    context: dg.OpExecutionContext, config: RefreshConfig, ledger: LedgerResource, stripe: StripeResource
) -> None:
    """Resolve unknown outcomes, append reversal and account readiness changes, release holds; every
    program's batches through its own paying account. One program's refusal never stops the others."""
    with refusal_fails_the_step():
        period = parse_period(config.period) if config.period else None
    run = aftercare.refresh_programs(
        ledger.engine,
        stripe.gateways(ledger.engine),
        period=period,
        program_ids=[config.program] if config.program else None,
        settings=stripe.execution_settings(),
        announce=context.log.warning,
        reconcile=True,  # the ledger must still match Stripe after every refresh, or the run says so
    )
    for pm, report in run.reports.items():
        context.log.info(f"refreshed {report.as_json()}")
        reconciled = run.reconciled[pm]
        (context.log.info if reconciled.passed else context.log.error)(f"{report.batch_id}: {reconciled.summary}")
    for pm, why in run.refused.items():
        context.log.error(f"{pm}: {why}")
    problems = [f"{pm}: {why}" for pm, why in run.refused.items()]
    if run.drifted:
        drifted = ", ".join(run.reports[pm].batch_id for pm in run.drifted)
        problems.insert(0, f"ledger and Stripe disagree for {drifted}: run `sorae-payouts reconcile` for the details")
    if problems:
        raise dg.Failure("; ".join(problems), allow_retries=False)


@dg.job(description="Payout status refresh (same as `sorae-payouts refresh`).")
def payout_refresh_job():
    refresh_payouts_op()
