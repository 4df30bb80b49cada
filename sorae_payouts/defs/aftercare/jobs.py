"""Operator jobs for people who live in the Dagster UI (launchpad config), with the CLI's rules.

Approve and retry act on one program-month: the run's partition ("2026-10-01|acme") when launched on
one, else `period` (+ `program`, default `default`) from the run config. Refresh covers every program
(or one), each through its own paying account.
"""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from sorae_payouts.aftercare.reconcile import reconcile_batch
from sorae_payouts.aftercare.refresh import refresh_batch, refreshable_periods
from sorae_payouts.aftercare.retry import execute_retry, plan_retry
from sorae_payouts.core.periods import parse_period
from sorae_payouts.defs.lib.partitions import program_months
from sorae_payouts.defs.lib.refusals import refusal_fails_the_step
from sorae_payouts.defs.lib.resources import LedgerResource, StripeResource
from sorae_payouts.defs.lib.run_config import PERIOD_HELP, PROGRAM_HELP, program_month
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.registry.programs import get_program, list_programs


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
    with ledger.engine.connect() as conn:  # the next keys name the paying account (GET /v1/account)
        gateway = stripe.program_gateway(get_program(conn, pm.program_id), ledger.engine)
        plan = plan_retry(
            conn,
            pm.period,
            program_id=pm.program_id,
            item_ids=config.item_ids or None,
            error_code=config.error_code,
            paying_account=gateway.paying_account(),
        )
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
        report = execute_retry(
            ledger.engine,
            gateway,
            plan,
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
    with ledger.engine.connect() as conn:
        programs = [p for p in list_programs(conn) if config.program in (None, p.program_id)]
        work = [
            (
                p,
                refreshable_periods(
                    conn, parse_period(config.period) if config.period else None, program_id=p.program_id
                ),
            )
            for p in programs
        ]
    drifted, refused = [], []
    for program, periods in work:
        for period in periods:
            try:
                gateway = stripe.program_gateway(program, ledger.engine)  # one per paying account
                report = refresh_batch(
                    ledger.engine,
                    gateway,
                    period,
                    program_id=program.program_id,
                    settings=stripe.execution_settings(),
                    announce=context.log.warning,
                )
            except Exception as exc:
                context.log.error(f"{program.program_id} {period:%Y-%m}: {exc}")
                refused.append(f"{program.program_id} {period:%Y-%m}: {exc}")
                continue
            context.log.info(f"refreshed {report.as_json()}")
            # Reconciliation after every refresh: the ledger must still match Stripe, or the run says so.
            with ledger.engine.connect() as conn:
                reconciled = reconcile_batch(conn, gateway, period, program_id=program.program_id)
            (context.log.info if reconciled.passed else context.log.error)(f"{report.batch_id}: {reconciled.summary}")
            if not reconciled.passed:
                drifted.append(report.batch_id)
    problems = (
        [f"ledger and Stripe disagree for {', '.join(drifted)}: run `sorae-payouts reconcile` for the details"]
        if drifted
        else []
    ) + refused
    if problems:
        raise dg.Failure("; ".join(problems), allow_retries=False)


@dg.job(description="Payout status refresh (same as `sorae-payouts refresh`).")
def payout_refresh_job():
    refresh_payouts_op()
