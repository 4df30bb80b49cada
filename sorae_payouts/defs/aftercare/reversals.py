"""Reversed money in Dagster: the operator's decision job (same rules as `sorae-payouts reversals
resolve`) and the negative-balance recovery job. The check that every reversed cent is accounted for
(`reversals_accounted`) is evaluated by the execution step, per program-month (checks.py)."""

from datetime import UTC, datetime
from typing import Literal

import dagster as dg
from pydantic import Field

from sorae_payouts.aftercare.reversals import resolve_reversal
from sorae_payouts.core.money import format_minor
from sorae_payouts.defs.lib.partitions import program_months
from sorae_payouts.defs.lib.refusals import refusal_fails_the_step
from sorae_payouts.defs.lib.resources import LedgerResource, StripeResource
from sorae_payouts.defs.lib.run_config import program_month
from sorae_payouts.use_cases import aftercare


class ResolveReversalConfig(dg.Config):
    item_id: int = Field(description="The payout item whose reversed amount you decide (see `reversals list`)")
    decision: Literal["owe_again", "write_off"] = Field(
        description="owe_again: paid with the next batch built; write_off: closed with the reason"
    )
    decided_by: str = Field(description="Your name: recorded with the decision")
    reason: str | None = Field(default=None, description="Why (required for write_off)")


@dg.op
def resolve_reversal_op(context: dg.OpExecutionContext, config: ResolveReversalConfig, ledger: LedgerResource) -> None:
    """Append the decision about an item's pending reversed amount; never edits the reversed month."""
    with refusal_fails_the_step():
        decision = resolve_reversal(
            ledger.engine,
            config.item_id,
            config.decision,
            decided_by=config.decided_by,
            reason=config.reason,
            now=datetime.now(UTC),
        )
    item = decision.item
    context.log.info(
        f"item {item.payout_item_id} ({item.affiliate_id}): {format_minor(decision.amount_minor, item.currency)} "
        f"{decision.decision} by {decision.decided_by}; goes to {decision.carried_into}"
    )


@dg.job(description="Decide what a reversed transfer means (same rules as `sorae-payouts reversals resolve`).")
def resolve_reversal_job():
    resolve_reversal_op()


class RecoverConfig(dg.Config):
    period: str | None = Field(
        default=None,
        description="YYYY-MM of the approved batch whose negative balances to recover; empty: the run's partition",
    )
    program: str | None = Field(default=None, description="The program (default when empty)")


@dg.op(pool="stripe_api")
def recover_negative_balances_op(
    context: dg.OpExecutionContext, config: RecoverConfig, ledger: LedgerResource, stripe: StripeResource
) -> None:
    """Under the batch's `recover_by_reversal` policy, reverse transfers up to each negative balance."""
    with refusal_fails_the_step():
        pm = program_month(context, config.period, config.program)
        report = aftercare.recover(ledger.engine, stripe.gateways(ledger.engine), pm, now=datetime.now(UTC))
    context.log.info(f"recovery {report.as_json()}")
    if report.failed:
        raise dg.Failure(f"{len(report.failed)} reversal(s) refused by Stripe: {report.failed}", allow_retries=False)


@dg.job(
    partitions_def=program_months,
    description="Recover negative balances by reversal (same as `sorae-payouts reversals recover`).",
)
def recover_negative_balances_job():
    recover_negative_balances_op()
