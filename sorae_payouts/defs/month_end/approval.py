"""Recording, from the Dagster UI, an approval signed outside it.

The webserver has no login: whoever can launch a run could type any operator's name. So this job never
approves on a name: its run config carries an approval signed with the operator's own key by
`sorae-payouts batch sign PERIOD --program P --hash H` (which prints this very config), and the job
records it only if the signature verifies with that operator's current registered key, for this
program, batch and full manifest hash. A signature is not a secret: it approves one manifest hash of one
batch and nothing else, so pasting it into a launchpad gives nobody anything. The `sorae/operator` tag
is only a label: it must name the signing operator when present.
"""

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
from sorae_payouts.month_end.approvals import SignedApproval, record_signed_approval
from sorae_payouts.month_end.batches import BatchError
from sorae_payouts.registry.operators import normalize_identity

_SIGNED = "printed by `sorae-payouts batch sign` with the operator's own key"


class ApprovalConfig(dg.Config):
    period: str | None = Field(default=None, description=PERIOD_HELP)
    program: str | None = Field(default=None, description=PROGRAM_HELP)
    operator: str = Field(description=f"The signing operator ({_SIGNED})")
    approved_at: str = Field(description=f"The signed approval time, ISO 8601 UTC ({_SIGNED})")
    manifest_hash: str = Field(description="The full manifest hash the operator reviewed and signed")
    signature: str = Field(description=f"The approval's signature ({_SIGNED})")


def signed_approval(config: ApprovalConfig, tags: dict[str, str]) -> SignedApproval:
    """The signed approval of the run config; a `sorae/operator` tag naming someone else is refused."""
    tagged = (tags.get(TAG_OPERATOR) or "").strip()
    if tagged and normalize_identity(tagged) != normalize_identity(config.operator):
        raise BatchError(f"run tag {TAG_OPERATOR} names {tagged!r} but the approval is signed by {config.operator!r}")
    try:
        approved_at = datetime.fromisoformat(config.approved_at)
    except ValueError:
        raise BatchError(f"approved_at {config.approved_at!r} is not an ISO 8601 time") from None
    if approved_at.tzinfo is None:
        raise BatchError("approved_at must carry its UTC offset, as `batch sign` prints it")
    return SignedApproval(normalize_identity(config.operator), approved_at, config.manifest_hash, config.signature)


@dg.op
def approve_batch_op(context: dg.OpExecutionContext, config: ApprovalConfig, ledger: LedgerResource) -> None:
    """Record an approval of the period's draft batch signed outside Dagster (two operators above the
    policy's amount)."""
    with refusal_fails_the_step():
        pm = program_month(context, config.period, config.program)
        approval = record_signed_approval(
            ledger.engine,
            pm.period,
            signed_approval(config, context.run.tags),
            now=datetime.now(UTC),
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
    description="Record a payout batch approval signed outside Dagster: paste the run config printed by "
    "`sorae-payouts batch sign PERIOD --program P --hash H` (the operator's own key signs it; the webserver "
    "has no login, so a typed name approves nothing).",
)
def approve_batch_job():
    approve_batch_op()
