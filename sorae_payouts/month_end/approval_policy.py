"""How many approvals a batch needs, from thresholds no single person can change.

A batch paying more than the dual-approval amount of a currency needs two different operators. Two
sources say what that amount is, and the stricter wins, per currency:
- the policy frozen into the batch when it was built (part of its manifest hash). It comes from the
  deployment's settings, which a Dagster launch can override in its run config, and from the
  program's policy: one person could make it lax;
- the program's CONFIRMED approval policy: the deployment's default thresholds
  (`DEFAULT_DUAL_APPROVAL_OVER`, code reviewed and deployed) overridden by the program's latest
  `program_approval_policy` row whose policy request was signed by one operator and confirmed by
  another (`operator_history`), or by the program's first row, written by the database when the
  program was created. Rows that do not verify are skipped.
So raising a threshold (in the program, in a run's config, in the batch's frozen policy by hand)
takes two people; lowering one in the run config only makes a batch stricter.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from sorae_payouts.ledger.sql import text
from sorae_payouts.month_end.batches import Batch
from sorae_payouts.month_end.manifest import DEFAULT_DUAL_APPROVAL_OVER, PayoutPolicy
from sorae_payouts.registry.operator_history import RegistryHistory

DEPLOYMENT_THRESHOLDS = PayoutPolicy.from_major({}, DEFAULT_DUAL_APPROVAL_OVER).dual_approval_over_minor


def confirmed_thresholds(conn: sa.Connection, program_id: str, history: RegistryHistory) -> dict[str, int]:
    """The program's dual-approval thresholds ({currency: minor}) as its verified history says now."""
    override: dict | None = None
    rows = conn.execute(
        text(
            "SELECT policy_pk, dual_approval_over_minor, request_pk FROM program_approval_policy "
            "WHERE program_id = :p ORDER BY policy_pk"
        ),
        {"p": program_id},
    ).all()
    for index, row in enumerate(rows):
        if row.request_pk is None:
            if index > 0:  # only the first row may be the program's creation (the database refuses others)
                continue
        else:
            request = history.verified_requests.get(int(row.request_pk))
            if (
                request is None
                or request.kind != "policy"
                or _parsed(request.policy_value) != _parsed(row.dual_approval_over_minor)
            ):
                continue
        override = _parsed(row.dual_approval_over_minor)
    return {**DEPLOYMENT_THRESHOLDS, **{c: int(v) for c, v in (override or {}).items()}}


def _parsed(value) -> dict | None:
    if value is None:
        return None
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else None


def strictest_thresholds(frozen: dict, confirmed: dict) -> dict[str, int]:
    """Per currency, the lower of the two thresholds (a currency in only one keeps that one)."""
    merged = {c: int(v) for c, v in frozen.items()}
    for currency, amount in confirmed.items():
        merged[currency] = min(merged.get(currency, amount), int(amount))
    return merged


def batch_totals(conn: sa.Connection, batch: Batch) -> dict[str, int]:
    rows = conn.execute(
        text(
            "SELECT currency, SUM(amount_minor) FROM payout_item WHERE batch_id = :b "
            "AND carry_reason IS NULL GROUP BY currency"
        ),
        {"b": batch.batch_id},
    ).all()
    return {currency: int(total) for currency, total in rows}


def required_approvals(conn: sa.Connection, batch: Batch, history: RegistryHistory | None = None) -> int:
    """2 when the batch pays more than the strictest dual-approval amount in any currency, else 1."""
    history = history or RegistryHistory.load(conn, batch.program_id)
    frozen = batch.policy.get("dual_approval_over_minor") or {}
    over = strictest_thresholds(frozen, confirmed_thresholds(conn, batch.program_id, history))
    return 2 if any(c in over and total > over[c] for c, total in batch_totals(conn, batch).items()) else 1
