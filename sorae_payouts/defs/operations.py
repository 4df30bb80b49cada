"""Operator jobs for people who live in the Dagster UI (launchpad config), with the CLI's rules."""

from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from sorae_payouts.batches import BatchError, approve_batch
from sorae_payouts.defs.manifest_views import approvals_observation
from sorae_payouts.defs.resources import LedgerResource, StripeResource
from sorae_payouts.execution.executor import ExecutionRefused
from sorae_payouts.operations.refresh import refresh_batch, refreshable_periods
from sorae_payouts.operations.retry import execute_retry, plan_retry
from sorae_payouts.periods import parse_period


class ApprovalConfig(dg.Config):
    period: str = Field(description="YYYY-MM")
    approved_by: str = Field(description="Your name: recorded with the manifest hash")
    manifest_hash: str = Field(description="The manifest hash you reviewed (a prefix is enough)")


@dg.op
def approve_batch_op(context: dg.OpExecutionContext, config: ApprovalConfig, ledger: LedgerResource) -> None:
    """Record an approval of the period's draft batch (two people above the policy's amount)."""
    try:
        approval = approve_batch(ledger.engine, parse_period(config.period), approved_by=config.approved_by,
                                 now=datetime.now(timezone.utc), expected_hash=config.manifest_hash)
    except BatchError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    context.log.info(f"{approval.batch.batch_id}: {len(approval.approvers)}/{approval.required} approvals, "
                     f"status {approval.batch.status}")
    # Shown on the month's payout_manifest partition (Events), next to the manifest it approves.
    context.log_event(approvals_observation(ledger, approval.batch))


@dg.job(description="Approve a reviewed payout batch (same rules as `sorae-payouts batch approve`).")
def approve_batch_job():
    approve_batch_op()


class RetryConfig(dg.Config):
    period: str = Field(description="YYYY-MM")
    item_ids: list[int] = Field(default_factory=list, description="Items to retry; empty: all failed items")
    error_code: str | None = Field(default=None, description="Only failed items with this Stripe error code")
    dry_run: bool = Field(default=True, description="Only list what would be sent")


@dg.op(pool="stripe_api")
def retry_items_op(context: dg.OpExecutionContext, config: RetryConfig, ledger: LedgerResource,
                   stripe: StripeResource) -> None:
    """Give the chosen failed items a new attempt and send only them; refusals are logged."""
    period = parse_period(config.period)
    with ledger.engine.connect() as conn:
        plan = plan_retry(conn, period, item_ids=config.item_ids or None, error_code=config.error_code)
    for refused in plan.refused:
        context.log.warning(f"item {refused['payout_item_id']} refused: {refused['reason']}")
    for item in plan.retry:
        context.log.info(f"{'would send' if config.dry_run else 'retrying'} item {item['payout_item_id']} "
                         f"({item['affiliate_id']}, {item['amount_minor']} {item['currency']}) with key "
                         f"{item['next_idempotency_key']}")
    if config.dry_run or not plan.retry:
        return
    try:
        report = execute_retry(ledger.engine, stripe.gateway(), plan, now=datetime.now(timezone.utc),
                               settings=stripe.execution_settings())
    except ExecutionRefused as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    context.log.info(f"{report.batch_id}: {report.outcome.count('posted')} posted, "
                     f"{report.outcome.count('failed')} failed after retry")


@dg.job(description="Retry failed items in isolation (same rules as `sorae-payouts retry`).")
def retry_items_job():
    retry_items_op()


class RefreshConfig(dg.Config):
    period: str | None = Field(default=None, description="YYYY-MM; empty: every executed batch")


@dg.op(pool="stripe_api")
def refresh_payouts_op(context: dg.OpExecutionContext, config: RefreshConfig, ledger: LedgerResource,
                       stripe: StripeResource) -> None:
    """Resolve unknown outcomes, append reversal and account readiness changes, release holds."""
    with ledger.engine.connect() as conn:
        periods = refreshable_periods(conn, parse_period(config.period) if config.period else None)
    gateway = stripe.gateway()  # one client and one rate limiter for every batch of this run
    for period in periods:
        report = refresh_batch(ledger.engine, gateway, period, settings=stripe.execution_settings())
        context.log.info(f"refreshed {report.as_json()}")


@dg.job(description="Payout status refresh (same as `sorae-payouts refresh`).")
def payout_refresh_job():
    refresh_payouts_op()
