"""Reversed money in Dagster: the operator's decision job (a decision signed by `sorae-payouts reversals
sign`, same rules as `reversals resolve`) and the negative-balance recovery job. The check that every
reversed cent is accounted for (`reversals_accounted`) is evaluated by the execution step, per
program-month (checks.py)."""

from datetime import UTC, datetime
from typing import Literal

import dagster as dg
from pydantic import Field

from sorae_payouts.aftercare.reversals import ReversalError, SignedDecision, record_signed_decision
from sorae_payouts.core.money import format_minor
from sorae_payouts.defs.lib.partitions import program_months
from sorae_payouts.defs.lib.refusals import refusal_fails_the_step
from sorae_payouts.defs.lib.resources import LedgerResource, StripeResource
from sorae_payouts.defs.lib.run_config import program_month
from sorae_payouts.registry.operators import normalize_identity
from sorae_payouts.use_cases import aftercare

_SIGNED = "printed by `sorae-payouts reversals sign` with the operator's own key"


class ResolveReversalConfig(dg.Config):
    item_id: int = Field(description="The payout item whose reversed amount you decide (see `reversals list`)")
    program: str = Field(description="The item's program (an item of another program is refused)")
    decision: Literal["owe_again", "write_off"] = Field(
        description="owe_again: paid with the next batch built; write_off: closed with the reason"
    )
    reason: str | None = Field(default=None, description="Why (required for write_off)")
    operator: str = Field(description=f"The signing operator ({_SIGNED})")
    decided_at: str = Field(description=f"The signed decision time, ISO 8601 UTC ({_SIGNED})")
    amount_minor: int = Field(description="The pending amount the decision was signed for")
    signature: str = Field(description=f"The decision's signature ({_SIGNED})")


@dg.op
def resolve_reversal_op(context: dg.OpExecutionContext, config: ResolveReversalConfig, ledger: LedgerResource) -> None:
    """Append a decision about an item's pending reversed amount, signed outside Dagster by an operator of
    the item's program (the webserver has no login: a typed name decides nothing)."""
    with refusal_fails_the_step():
        try:
            decided_at = datetime.fromisoformat(config.decided_at)
        except ValueError:
            raise ReversalError(f"decided_at {config.decided_at!r} is not an ISO 8601 time") from None
        if decided_at.tzinfo is None:
            raise ReversalError("decided_at must carry its UTC offset, as `reversals sign` prints it")
        signed = SignedDecision(normalize_identity(config.operator), decided_at, config.amount_minor, config.signature)
        decision = record_signed_decision(
            ledger.engine, config.item_id, config.decision, signed, program_id=config.program, reason=config.reason
        )
    item = decision.item
    context.log.info(
        f"item {item.payout_item_id} ({item.affiliate_id}, program {item.program_id}): "
        f"{format_minor(decision.amount_minor, item.currency)} {decision.decision} by {decision.decided_by}; "
        f"goes to {decision.carried_into}"
    )


@dg.job(
    description="Record a reversal decision signed outside Dagster: paste the run config printed by "
    "`sorae-payouts reversals sign ITEM --program P --owe-again|--write-off`."
)
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
