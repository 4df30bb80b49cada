"""Approving payout batches, and verifying the approvals before any money moves.

An approval is one registered, active operator's yes to one manifest hash (append-only
`batch_approval`, with who, when and from where). A batch paying more than its frozen policy's
dual-approval amount in any currency needs two different identities (`alice` and ` ALICE ` are one).
Once it has the approvals it needs, the batch becomes `approved` and its manifest is frozen.

The executor does not trust the batch status: `verify_batch_approvals` recounts, on every run, the
distinct identities that approved the current hash (each active at approval time) against the
policy, and recomputes the hash from the items. A status set to `approved` by hand pays nothing.

Programs: a batch is approved by the operators of its own program (the registry is per program), and
each approval row records that program; an approval recorded under another program never counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.core.origin import Origin
from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.month_end.batches import Batch, BatchError, load_batch
from sorae_payouts.month_end.manifest import compute_manifest_hash
from sorae_payouts.registry.operators import OperatorError, normalize_identity, require_active, was_active_at
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

MIN_HASH_PREFIX = 12  # hex characters an approver must quote from the hash they reviewed
_HEX = re.compile(r"[0-9a-f]+")


class ApprovalMissing(BatchError):
    """The batch lacks the approvals its policy requires; nothing may be sent. The message says why."""


@dataclass
class Approval:
    batch: Batch
    approvers: list[str]  # identities that approved the current manifest hash
    required: int

    @property
    def complete(self) -> bool:
        return self.batch.status != "draft"


def required_approvals(conn: sa.Connection, batch: Batch) -> int:
    """2 when the batch pays more than its policy's dual-approval amount in any currency, else 1."""
    over = batch.policy.get("dual_approval_over_minor") or {}
    totals = conn.execute(
        text(
            "SELECT currency, SUM(amount_minor) FROM payout_item WHERE batch_id = :b "
            "AND carry_reason IS NULL GROUP BY currency"
        ),
        {"b": batch.batch_id},
    ).all()
    return 2 if any(c in over and int(total) > int(over[c]) for c, total in totals) else 1


def check_reviewed_hash(reviewed: str | None) -> str:
    """The reviewed hash prefix, normalized; refuses anything shorter than MIN_HASH_PREFIX hex digits."""
    value = (reviewed or "").strip().lower()
    if len(value) < MIN_HASH_PREFIX or not _HEX.fullmatch(value):
        raise BatchError(
            f"--hash must be at least {MIN_HASH_PREFIX} hex characters of the manifest hash you "
            f"reviewed (got {reviewed!r}); see `sorae-payouts batch show`"
        )
    return value


def approve_batch(
    engine: sa.Engine,
    period: date,
    *,
    approved_by: str,
    now: datetime,
    expected_hash: str,
    origin: Origin | None = None,
    program_id: str = DEFAULT_PROGRAM,
) -> Approval:
    """Record one operator's approval of the program's draft batch's current manifest. The batch
    becomes `approved` (frozen) once it has the approvals its policy requires from different identities.
    Refuses an operator who is not an active registered operator of the batch's program, a second
    approval by the same identity, a manifest that changed since it was built, and a hash other than
    the one the approver reviewed."""
    reviewed = check_reviewed_hash(expected_hash)
    origin = origin or Origin.here()
    with engine.begin() as conn:
        batch = load_batch(conn, period, program_id=program_id)
        try:
            operator = require_active(conn, approved_by, batch.program_id)
        except OperatorError as exc:
            of = (
                ""
                if batch.program_id == DEFAULT_PROGRAM
                else f" (batch {batch.batch_id} of program {batch.program_id})"
            )
            raise BatchError(f"approval refused{of}: {exc}") from exc
        if batch.status != "draft":
            raise BatchError(
                f"batch {batch.batch_id} is {batch.status} (approved by {batch.approved_by}); nothing to approve"
            )
        actual, count = compute_manifest_hash(conn, batch.batch_id, period, batch.policy)
        if actual != batch.manifest_hash or count != batch.item_count:
            raise BatchError(
                f"batch {batch.batch_id} changed since it was built (hash {actual[:16]} != "
                f"{batch.manifest_hash[:16]}); rebuild and review it again"
            )
        if not batch.manifest_hash.startswith(reviewed):
            raise BatchError(
                f"batch {batch.batch_id} has manifest hash {batch.manifest_hash[:16]}, not the "
                f"reviewed {reviewed[:16]}; review the current manifest"
            )
        approvers = approval_identities(conn, batch)
        if operator.operator_id in approvers:
            raise BatchError(
                f"{operator.operator_id} already approved batch {batch.batch_id}; a second approval "
                "must come from someone else"
            )
        # Append-only; one per identity per manifest (a rebuilt draft needs fresh approvals).
        conn.execute(
            text(
                "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, program_id, "
                "operator_id, host, os_user, dagster_run_id) VALUES (:b, :by, :now, :h, :p, :op, :host, "
                ":user, :run)"
            ),
            {
                "b": batch.batch_id,
                "by": operator.operator_id,
                "now": now,
                "h": batch.manifest_hash,
                "p": batch.program_id,
                "op": operator.operator_id,
                "host": origin.host,
                "user": origin.os_user,
                "run": origin.dagster_run_id,
            },
        )
        approvers.append(operator.operator_id)
        required = required_approvals(conn, batch)
        if len(approvers) >= required:
            updated = conn.execute(
                text(
                    "UPDATE payout_batch SET status = 'approved', approved_by = :by, approved_at = :now "
                    "WHERE batch_id = :b AND status = 'draft' AND manifest_hash = :h"
                ),
                {"by": ", ".join(approvers), "now": now, "b": batch.batch_id, "h": batch.manifest_hash},
            )
            if updated.rowcount != 1:
                raise BatchError(f"batch {batch.batch_id} changed concurrently; look again before approving")
        return Approval(load_batch(conn, period, program_id=batch.program_id), approvers, required)


def approval_identities(conn: sa.Connection, batch: Batch, *, at_approval_time: bool = False) -> list[str]:
    """Distinct identities that approved the batch's current manifest hash for the batch's program, in
    approval order. With `at_approval_time`, only those that were active registered operators of the
    program when they approved. Approvals recorded before the registry existed (no operator_id; none
    can be added since) count under their normalized name."""
    rows = conn.execute(
        text(
            "SELECT operator_id, approved_by, approved_at, program_id FROM batch_approval "
            "WHERE batch_id = :b AND manifest_hash = :h AND program_id = :p "
            "ORDER BY approved_at, approval_pk"
        ),
        {"b": batch.batch_id, "h": batch.manifest_hash, "p": batch.program_id},
    ).all()
    identities: list[str] = []
    for row in rows:
        if row.operator_id is None:
            identity = normalize_identity(row.approved_by)
        else:
            identity = row.operator_id
            if at_approval_time and not was_active_at(conn, identity, as_utc(row.approved_at), row.program_id):
                continue
        if identity not in identities:
            identities.append(identity)
    return identities


def verify_batch_approvals(conn: sa.Connection, batch: Batch) -> list[str]:
    """Refuse (ApprovalMissing) unless the batch's current items hash to its manifest hash and that
    hash has the approvals its frozen policy requires, from distinct identities that were active
    registered operators when they approved. Returns those identities."""
    actual, count = compute_manifest_hash(conn, batch.batch_id, batch.period, batch.policy)
    if actual != batch.manifest_hash or count != batch.item_count:
        raise ApprovalMissing(
            f"batch {batch.batch_id}: items no longer match the approved manifest "
            f"(hash {actual[:16]} != {batch.manifest_hash[:16]})"
        )
    identities = approval_identities(conn, batch, at_approval_time=True)
    required = required_approvals(conn, batch)
    if len(identities) < required:
        who = ", ".join(identities) or "nobody"
        raise ApprovalMissing(
            f"batch {batch.batch_id} is {batch.status} but its manifest hash "
            f"{batch.manifest_hash[:16]} has {len(identities)} of the {required} approvals its "
            f"policy requires from active registered operators (approved by: {who})"
        )
    return identities
