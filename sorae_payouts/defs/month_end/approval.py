"""Approving a reviewed batch from the Dagster UI (launchpad config), with the CLI's rules."""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from sorae_payouts.core.origin import Origin
from sorae_payouts.defs.lib.manifest_views import approvals_observation
from sorae_payouts.defs.lib.partitions import program_months
from sorae_payouts.defs.lib.refusals import refusal_fails_the_step
from sorae_payouts.defs.lib.resources import LedgerResource
from sorae_payouts.defs.lib.run_config import PERIOD_HELP, PROGRAM_HELP, program_month
from sorae_payouts.defs.lib.tags import TAG_OPERATOR
from sorae_payouts.month_end.approvals import approve_batch
from sorae_payouts.month_end.batches import BatchError
from sorae_payouts.registry.operators import normalize_identity


class ApprovalConfig(dg.Config):
    period: str | None = Field(default=None, description=PERIOD_HELP)
    program: str | None = Field(default=None, description=PROGRAM_HELP)
    approved_by: str | None = Field(
        default=None,
        description=f"Your operator identity (or the run tag `{TAG_OPERATOR}`); must be registered and active",
    )
    manifest_hash: str = Field(description="The manifest hash you reviewed (at least 12 hex characters)")


def approving_operator(config: ApprovalConfig, tags: dict[str, str]) -> str:
    """The operator named by the run config or the run tag; both present must agree. The Dagster
    webserver has no login: whoever can launch runs can type any name, so production puts the
    webserver behind the company's authentication (see README)."""
    from_config, from_tag = (config.approved_by or "").strip(), (tags.get(TAG_OPERATOR) or "").strip()
    if from_config and from_tag and normalize_identity(from_config) != normalize_identity(from_tag):
        raise BatchError(f"run config names operator {from_config!r} but tag {TAG_OPERATOR} names {from_tag!r}")
    if not (from_config or from_tag):
        raise BatchError(f"name the approving operator in the run config (approved_by) or the run tag {TAG_OPERATOR}")
    return from_config or from_tag


@dg.op
def approve_batch_op(context: dg.OpExecutionContext, config: ApprovalConfig, ledger: LedgerResource) -> None:
    """Record an approval of the period's draft batch (two operators above the policy's amount)."""
    with refusal_fails_the_step():
        pm = program_month(context, config.period, config.program)
        operator = approving_operator(config, context.run.tags)
        approval = approve_batch(
            ledger.engine,
            pm.period,
            approved_by=operator,
            now=datetime.now(UTC),
            expected_hash=config.manifest_hash,
            origin=Origin.here(dagster_run_id=context.run_id),
            program_id=pm.program_id,
        )
    context.log.info(
        f"{approval.batch.batch_id}: {len(approval.approvers)}/{approval.required} approvals, "
        f"status {approval.batch.status}"
    )
    # Shown on the program-month's payout_manifest partition (Events), next to the manifest it approves.
    context.log_event(approvals_observation(ledger, approval.batch, pm.program_id))


@dg.job(
    partitions_def=program_months,
    description="Approve a reviewed payout batch as a registered operator (same rules as "
    "`sorae-payouts batch approve`; operator from run config or the sorae/operator tag).",
)
def approve_batch_job():
    approve_batch_op()
