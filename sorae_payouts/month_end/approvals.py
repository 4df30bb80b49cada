"""Approving payout batches with signatures, and verifying them before any money moves.

An approval is one operator's signature (`core.signing`, their personal Ed25519 key) over exactly:
the program, the batch id, the full manifest hash, the operator, their key id and the approval time.
The operator is whoever holds the key (`require_signer`): a typed name never chooses who approves.
It is appended to `batch_approval` with the signature; the database refuses an approval without a
signature or with a key that is not the current key of an active operator of the batch's program.
A batch paying more than its dual-approval amount in any currency needs two different operators
(`approval_policy`: the stricter of its frozen policy and the program's confirmed thresholds); once it
has them it becomes `approved` and its manifest is frozen.

The executor trusts neither the status nor the rows: `verify_batch_approvals` re-hashes the items,
replays the program's signed registry (`operator_history`) and counts only approvals whose signature
verifies with the key the operator held, as registered and confirmed, when they approved. Unsigned
approvals count only for batches already approved before signatures existed (revision 0050).

The Dagster webserver has no login, so `approve_batch_job` records only an approval signed outside
(`sign_approval`, printed by `sorae-payouts batch sign`): a signature is not a secret, it approves one
manifest hash of one batch and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from sorae_payouts.core.origin import Origin
from sorae_payouts.core.signing import SigningKey, signed_time, verify
from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.month_end.approval_policy import required_approvals
from sorae_payouts.month_end.batches import Batch, BatchError, load_batch
from sorae_payouts.month_end.manifest import compute_manifest_hash
from sorae_payouts.registry.operator_history import RegistryHistory
from sorae_payouts.registry.operators import (
    OperatorError,
    find_operator,
    normalize_identity,
    require_signer,
    was_active_at,
)
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

__all__ = ["ApprovalMissing", "approve_batch", "required_approvals", "verify_batch_approvals"]

MIN_HASH_PREFIX = 12  # hex characters an approver must quote from the hash they reviewed
APPROVAL = "approval"
CLOCK_SKEW = timedelta(minutes=5)  # how far in the future a signed approval time may be
_HEX = re.compile(r"[0-9a-f]+")


class ApprovalMissing(BatchError):
    """The batch lacks the approvals its policy requires; nothing may be sent. The message says why."""


@dataclass
class Approval:
    batch: Batch
    approvers: list[str]  # identities whose approval of the current manifest hash counts
    required: int

    @property
    def complete(self) -> bool:
        return self.batch.status != "draft"


@dataclass(frozen=True)
class SignedApproval:
    """An approval signed outside the engine (for the Dagster job): all a run config needs, no secret."""

    operator: str
    approved_at: datetime
    manifest_hash: str
    signature: str

    def as_run_config(self) -> dict:
        return {
            "operator": self.operator,
            "approved_at": signed_time(self.approved_at),
            "manifest_hash": self.manifest_hash,
            "signature": self.signature,
        }


def approval_fields(batch: Batch, operator_id: str, key_id: str, approved_at: datetime) -> dict:
    return {
        "program": batch.program_id,
        "batch_id": batch.batch_id,
        "manifest_hash": batch.manifest_hash,
        "operator": operator_id,
        "key_id": key_id,
        "approved_at": signed_time(approved_at),
    }


def check_reviewed_hash(reviewed: str | None) -> str:
    """The reviewed hash prefix, normalized; refuses anything shorter than MIN_HASH_PREFIX hex digits."""
    value = (reviewed or "").strip().lower()
    if len(value) < MIN_HASH_PREFIX or not _HEX.fullmatch(value):
        raise BatchError(
            f"--hash must be at least {MIN_HASH_PREFIX} hex characters of the manifest hash you "
            f"reviewed (got {reviewed!r}); see `sorae-payouts batch show`"
        )
    return value


def _reviewable(conn, period: date, program_id: str, reviewed: str) -> Batch:
    batch = load_batch(conn, period, program_id=program_id)
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
    return batch


def _refused(batch_or_program: str, exc: OperatorError) -> BatchError:
    return BatchError(f"approval refused ({batch_or_program}): {exc}")


def sign_approval(
    engine: sa.Engine,
    period: date,
    *,
    key: SigningKey,
    now: datetime,
    expected_hash: str,
    program_id: str = DEFAULT_PROGRAM,
    acting_as: str | None = None,
) -> SignedApproval:
    """The key's operator's signature of the program's draft batch's current manifest (recorded nowhere)."""
    reviewed = check_reviewed_hash(expected_hash)
    now = now.astimezone(UTC)
    with engine.connect() as conn:
        batch = _reviewable(conn, period, program_id, reviewed)
        try:
            operator = require_signer(conn, batch.program_id, key, acting_as=acting_as)
        except OperatorError as exc:
            raise _refused(f"batch {batch.batch_id} of program {batch.program_id}", exc) from exc
    signature = key.sign(APPROVAL, approval_fields(batch, operator.operator_id, key.key_id, now))
    return SignedApproval(operator.operator_id, now, batch.manifest_hash, signature)


def approve_batch(
    engine: sa.Engine,
    period: date,
    *,
    key: SigningKey,
    now: datetime,
    expected_hash: str,
    origin: Origin | None = None,
    program_id: str = DEFAULT_PROGRAM,
    acting_as: str | None = None,
) -> Approval:
    """Sign and record the key's operator's approval of the program's draft batch's current manifest."""
    signed = sign_approval(
        engine, period, key=key, now=now, expected_hash=expected_hash, program_id=program_id, acting_as=acting_as
    )
    return record_signed_approval(engine, period, signed, now=now, origin=origin, program_id=program_id)


def record_signed_approval(
    engine: sa.Engine,
    period: date,
    signed: SignedApproval,
    *,
    now: datetime,
    origin: Origin | None = None,
    program_id: str = DEFAULT_PROGRAM,
) -> Approval:
    """Record an approval signed with the operator's current key. The batch becomes `approved` (frozen)
    once it has the approvals it requires from different operators. Refuses a signature that does not
    verify, an operator who is not active in the batch's program, a second approval by the same
    operator, a manifest that changed, and a signing time in the future."""
    origin = origin or Origin.here()
    approved_at = signed.approved_at.astimezone(UTC)
    if approved_at > now.astimezone(UTC) + CLOCK_SKEW:
        raise BatchError(f"the approval is signed for {approved_at:%Y-%m-%d %H:%M} UTC, in the future; sign it again")
    with engine.begin() as conn:
        batch = _reviewable(conn, period, program_id, check_reviewed_hash(signed.manifest_hash))
        where = f"batch {batch.batch_id} of program {batch.program_id}"
        if signed.manifest_hash.strip().lower() != batch.manifest_hash:
            raise BatchError(f"approval refused ({where}): a signed approval names the full manifest hash")
        operator = find_operator(conn, signed.operator, batch.program_id)
        if operator is None or operator.status != "active" or operator.key_id is None:
            raise _refused(where, OperatorError(f"{signed.operator!r} is not an active operator with a key"))
        public_key = conn.execute(
            text("SELECT public_key FROM operator_key WHERE program_id = :p AND key_id = :k"),
            {"p": batch.program_id, "k": operator.key_id},
        ).scalar_one()
        fields = approval_fields(batch, operator.operator_id, operator.key_id, approved_at)
        if not verify(public_key, APPROVAL, fields, signed.signature):
            raise BatchError(
                f"approval refused ({where}): the signature is not {operator.operator_id}'s (current key "
                f"{operator.key_id[:16]}) for manifest hash {batch.manifest_hash[:16]} at {fields['approved_at']}"
            )
        history = RegistryHistory.load(conn, batch.program_id)
        approvers = approval_identities(conn, batch, history)
        if operator.operator_id in approvers:
            raise BatchError(
                f"{operator.operator_id} already approved batch {batch.batch_id}; a second approval "
                "must come from someone else"
            )
        # Append-only; one per identity per manifest (a rebuilt draft needs fresh approvals).
        conn.execute(
            text(
                "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, program_id, "
                "operator_id, host, os_user, dagster_run_id, key_id, signature) VALUES (:b, :by, :at, :h, :p, :op, "
                ":host, :user, :run, :k, :sig)"
            ).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True))),
            {
                "b": batch.batch_id,
                "by": operator.operator_id,
                "at": approved_at,
                "h": batch.manifest_hash,
                "p": batch.program_id,
                "op": operator.operator_id,
                "host": origin.host,
                "user": origin.os_user,
                "run": origin.dagster_run_id,
                "k": operator.key_id,
                "sig": signed.signature,
            },
        )
        approvers = approval_identities(conn, batch, history)
        required = required_approvals(conn, batch, history)
        if len(approvers) >= required:
            updated = conn.execute(
                text(
                    "UPDATE payout_batch SET status = 'approved', approved_by = :by, approved_at = :now "
                    "WHERE batch_id = :b AND status = 'draft' AND manifest_hash = :h"
                ),
                {"by": ", ".join(approvers), "now": approved_at, "b": batch.batch_id, "h": batch.manifest_hash},
            )
            if updated.rowcount != 1:
                raise BatchError(f"batch {batch.batch_id} changed concurrently; look again before approving")
        return Approval(load_batch(conn, period, program_id=batch.program_id), approvers, required)


def approval_identities(conn: sa.Connection, batch: Batch, history: RegistryHistory | None = None) -> list[str]:
    """Distinct operators whose approval of the batch's current manifest hash counts, in approval order:
    signed approvals whose signature verifies with the key the operator held, active, when they
    approved (as the signed registry history proves); unsigned ones only for a batch approved before
    revision 0050, by an operator active then."""
    history = history or RegistryHistory.load(conn, batch.program_id)
    legacy = conn.execute(
        text("SELECT 1 FROM approval_legacy_batch WHERE batch_id = :b"), {"b": batch.batch_id}
    ).first()
    rows = conn.execute(
        text(
            "SELECT operator_id, approved_by, approved_at, key_id, signature FROM batch_approval "
            "WHERE batch_id = :b AND manifest_hash = :h AND program_id = :p ORDER BY approved_at, approval_pk"
        ),
        {"b": batch.batch_id, "h": batch.manifest_hash, "p": batch.program_id},
    ).all()
    identities: list[str] = []
    for row in rows:
        at = as_utc(row.approved_at)
        if row.signature is None:
            if legacy is None:
                continue
            identity = row.operator_id or normalize_identity(row.approved_by)
            if row.operator_id is not None and not was_active_at(conn, identity, at, batch.program_id):
                continue
        else:
            identity = row.operator_id
            fields = approval_fields(batch, identity, row.key_id, at)
            if not history.verifies(identity, row.key_id, at, APPROVAL, fields, row.signature):
                continue
        if identity not in identities:
            identities.append(identity)
    return identities


def verify_batch_approvals(conn: sa.Connection, batch: Batch) -> list[str]:
    """Refuse (ApprovalMissing) unless the batch's current items hash to its manifest hash and that
    hash has the approvals the strictest policy requires, from distinct operators whose signatures
    verify against the program's signed registry history. Returns those operators."""
    actual, count = compute_manifest_hash(conn, batch.batch_id, batch.period, batch.policy)
    if actual != batch.manifest_hash or count != batch.item_count:
        raise ApprovalMissing(
            f"batch {batch.batch_id}: items no longer match the approved manifest "
            f"(hash {actual[:16]} != {batch.manifest_hash[:16]})"
        )
    history = RegistryHistory.load(conn, batch.program_id)
    identities = approval_identities(conn, batch, history)
    required = required_approvals(conn, batch, history)
    if len(identities) < required:
        who = ", ".join(identities) or "nobody"
        raise ApprovalMissing(
            f"batch {batch.batch_id} is {batch.status} but its manifest hash "
            f"{batch.manifest_hash[:16]} has {len(identities)} of the {required} approvals its "
            f"policy requires from operators whose signatures verify (approved by: {who})"
        )
    return identities
