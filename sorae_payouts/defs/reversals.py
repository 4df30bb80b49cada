"""Reversed money in Dagster: the operator's decision job (same rules as `sorae-payouts reversals
resolve`), the negative-balance recovery job, and the check that every reversed cent is accounted for."""

import time
from datetime import datetime, timezone
from typing import Literal

import dagster as dg
from pydantic import Field

from sorae_payouts import audit
from sorae_payouts.batches import BatchError
from sorae_payouts.defs.checks import _result
from sorae_payouts.defs.partitions import monthly_partitions
from sorae_payouts.defs.resources import LedgerResource, StripeResource
from sorae_payouts.money import format_minor
from sorae_payouts.operations.negative_balances import recover_negative_balances
from sorae_payouts.operations.reversals import ReversalError, resolve_reversal
from sorae_payouts.periods import parse_period


class ResolveReversalConfig(dg.Config):
    item_id: int = Field(description="The payout item whose reversed amount you decide (see `reversals list`)")
    decision: Literal["owe_again", "write_off"] = Field(
        description="owe_again: paid with the next batch built; write_off: closed with the reason")
    decided_by: str = Field(description="Your name: recorded with the decision")
    reason: str | None = Field(default=None, description="Why (required for write_off)")


@dg.op
def resolve_reversal_op(context: dg.OpExecutionContext, config: ResolveReversalConfig, ledger: LedgerResource) -> None:
    """Append the decision about an item's pending reversed amount; never edits the reversed month."""
    try:
        decision = resolve_reversal(ledger.engine, config.item_id, config.decision, decided_by=config.decided_by,
                                    reason=config.reason, now=datetime.now(timezone.utc))
    except ReversalError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    item = decision.item
    context.log.info(f"item {item.payout_item_id} ({item.affiliate_id}): {format_minor(decision.amount_minor, item.currency)} "
                     f"{decision.decision} by {decision.decided_by}; goes to {decision.carried_into}")


@dg.job(description="Decide what a reversed transfer means (same rules as `sorae-payouts reversals resolve`).")
def resolve_reversal_job():
    resolve_reversal_op()


class RecoverConfig(dg.Config):
    period: str = Field(description="YYYY-MM of the approved batch whose negative balances to recover")


@dg.op(pool="stripe_api")
def recover_negative_balances_op(context: dg.OpExecutionContext, config: RecoverConfig, ledger: LedgerResource,
                                 stripe: StripeResource) -> None:
    """Under the batch's `recover_by_reversal` policy, reverse transfers up to each negative balance."""
    try:
        report = recover_negative_balances(ledger.engine, stripe.gateway(), parse_period(config.period),
                                           now=datetime.now(timezone.utc))
    except BatchError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    context.log.info(f"recovery {report.as_json()}")
    if report.failed:
        raise dg.Failure(f"{len(report.failed)} reversal(s) refused by Stripe: {report.failed}", allow_retries=False)


@dg.job(description="Recover negative balances by reversal (same as `sorae-payouts reversals recover`).")
def recover_negative_balances_job():
    recover_negative_balances_op()


@dg.asset_check(asset="executed_transfers", partitions_def=monthly_partitions)
def reversals_accounted(context: dg.AssetCheckExecutionContext, ledger: LedgerResource) -> dg.AssetCheckResult:
    """Per currency: posted - reversed = net paid, and every reversed cent is pending a decision, owed
    again or written off (carried by at most one batch)."""
    started = time.perf_counter()
    with ledger.engine.connect() as conn:
        result = audit.reversals_are_accounted(conn, parse_period(context.partition_key))
    return _result(result, time.perf_counter() - started)
