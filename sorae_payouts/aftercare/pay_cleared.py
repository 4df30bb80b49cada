"""Paying, without a person, what failed or was held for a reason that has since cleared.

Run by `refresh` after it has recorded account readiness:
- a `failed` item whose latest error is one a fix on the affiliate's side clears
  (`error_codes.CLEARED_BY_ACCOUNT_FIX`) and whose connected account is ready again is reopened with a
  retry record by `refresh` and sent with a NEW attempt number (a new idempotency key: the failed
  attempt is stored at Stripe under the old one);
- a held item whose hold refresh has just released is sent as it is (its first attempt).
Both go through the normal execution path (`execute_batch` narrowed to those items), so approvals, the
Stripe group scan, pre-flight and exactly-once apply unchanged. Failures that need a person stay for
`sorae-payouts retry`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.aftercare.retry import reopen_failed
from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.ledger.sql import text
from sorae_payouts.registry.programs import DEFAULT_PROGRAM
from sorae_payouts.stripe_gateway import StripeGateway
from sorae_payouts.stripe_gateway.error_codes import CLEARED_BY_ACCOUNT_FIX

_FAILED_CLEARABLE = """
SELECT i.payout_item_id, i.stripe_account_id, a.error_code FROM payout_item i
JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id AND a.attempt_number =
     (SELECT MAX(x.attempt_number) FROM transfer_attempt x WHERE x.payout_item_id = i.payout_item_id)
WHERE i.batch_id = :b AND i.status = 'failed' AND i.carry_reason IS NULL
"""


def reattempt_cleared(
    engine: sa.Engine,
    gateway: StripeGateway,
    batch_id: str,
    period,
    *,
    released: list[int],
    now: datetime,
    settings: ExecutionSettings | None = None,
    program_id: str = DEFAULT_PROGRAM,
) -> tuple[int, int]:
    """Reopen clearable failures whose account is ready, then send them and the `released` holds.
    Returns (items sent, items of those now posted)."""
    with engine.connect() as conn:
        failed = [
            r
            for r in conn.execute(text(_FAILED_CLEARABLE), {"b": batch_id}).all()
            if r.error_code in CLEARED_BY_ACCOUNT_FIX
        ]
    readiness = {a: gateway.account_readiness(a) for a in sorted({r.stripe_account_id for r in failed})}
    ready = [r for r in failed if readiness[r.stripe_account_id].ready]
    reopened: list[int] = []
    if ready:
        with engine.begin() as conn:
            for r in ready:
                reopened += reopen_failed(
                    conn,
                    [int(r.payout_item_id)],
                    requested_by="refresh",
                    now=now,
                    reason=f"{r.error_code} cleared: {r.stripe_account_id} is ready again",
                )
    wanted = set(reopened) | set(released)
    if not wanted:
        return 0, 0
    execute_batch(
        engine,
        gateway,
        period,
        program_id=program_id,
        settings=settings,
        only=lambda item: item.payout_item_id in wanted,
    )
    with engine.connect() as conn:
        statuses = conn.execute(
            text("SELECT payout_item_id, status FROM payout_item WHERE batch_id = :b"), {"b": batch_id}
        ).all()
    return len(wanted), sum(1 for i, s in statuses if int(i) in wanted and s == ItemStatus.POSTED)
