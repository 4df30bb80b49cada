"""Reading and approving payout batches (used by the CLI and the Dagster layer).

Approval records who approved, when, and the manifest hash they saw (append-only `batch_approval`).
It refuses a batch whose items no longer produce the recorded hash (the manifest changed after it was
built) or a hash other than the one the approver reviewed. A batch whose payable total exceeds its
policy's dual-approval amount in any currency needs two approvals by different people.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.ledger.sql import as_date, as_utc, text
from sorae_payouts.manifest import compute_manifest_hash
from sorae_payouts.money import format_minor
from sorae_payouts.periods import period_key

class BatchError(Exception):
    """The batch operation is refused; the message says why."""


@dataclass
class Batch:
    batch_id: str
    period: date
    status: str
    manifest_hash: str
    item_count: int
    policy: dict
    built_at: datetime
    approved_at: datetime | None
    approved_by: str | None

    def as_json(self) -> dict:
        return {"batch_id": self.batch_id, "period": period_key(self.period), "status": self.status,
                "manifest_hash": self.manifest_hash, "item_count": self.item_count, "policy": self.policy,
                "built_at": self.built_at.isoformat(),
                "approved_at": self.approved_at.isoformat() if self.approved_at else None,
                "approved_by": self.approved_by}


_BATCH_SELECT = ("SELECT batch_id, period, status, manifest_hash, item_count, policy, built_at, approved_at, "
                 "approved_by FROM payout_batch")


def _batch(row) -> Batch:
    policy = row.policy if isinstance(row.policy, dict) else __import__("json").loads(row.policy)
    return Batch(row.batch_id, as_date(row.period), row.status, row.manifest_hash, int(row.item_count), policy,
                 as_utc(row.built_at), as_utc(row.approved_at) if row.approved_at else None, row.approved_by)


def load_batch(conn: sa.Connection, period: date) -> Batch:
    row = conn.execute(text(f"{_BATCH_SELECT} WHERE period = :period"), {"period": period}).first()
    if row is None:
        raise BatchError(f"no payout batch for {period_key(period)}; materialize payout_manifest for it first")
    return _batch(row)


def list_batches(conn: sa.Connection) -> list[Batch]:
    return [_batch(r) for r in conn.execute(text(f"{_BATCH_SELECT} ORDER BY period"))]


def manifest_preview(conn: sa.Connection, batch_id: str, limit: int = 50) -> list[dict]:
    """The largest items of the batch, for a quick look in the Dagster UI."""
    rows = conn.execute(text(
        "SELECT affiliate_id, currency, amount_minor, status, carry_reason, stripe_account_id FROM payout_item "
        "WHERE batch_id = :b ORDER BY status DESC, amount_minor DESC, affiliate_id LIMIT :n"),
        {"b": batch_id, "n": limit}).mappings()
    return [{**r, "amount_minor": int(r["amount_minor"]), "amount": format_minor(r["amount_minor"], r["currency"])}
            for r in rows]


@dataclass
class Approval:
    batch: Batch
    approvers: list[str]  # of the current manifest hash
    required: int

    @property
    def complete(self) -> bool:
        return self.batch.status != "draft"


def required_approvals(conn: sa.Connection, batch: Batch) -> int:
    """2 when the batch pays more than its policy's dual-approval amount in any currency, else 1."""
    over = batch.policy.get("dual_approval_over_minor") or {}
    totals = conn.execute(text("SELECT currency, SUM(amount_minor) FROM payout_item WHERE batch_id = :b "
                               "AND carry_reason IS NULL GROUP BY currency"), {"b": batch.batch_id}).all()
    return 2 if any(c in over and int(total) > int(over[c]) for c, total in totals) else 1


def approve_batch(engine: sa.Engine, period: date, *, approved_by: str, now: datetime,
                  expected_hash: str | None = None) -> Approval:
    """Record one person's approval of a draft batch's current manifest. The batch becomes
    `approved` (frozen) once it has the approvals its policy requires from different people.
    Refuses a manifest that changed since it was built, or other than the one the approver reviewed."""
    approver = approved_by.strip()
    if not approver:
        raise BatchError("an approval needs the approver's name (--by)")
    with engine.begin() as conn:
        batch = load_batch(conn, period)
        if batch.status != "draft":
            raise BatchError(f"batch {batch.batch_id} is {batch.status} (approved by {batch.approved_by}); "
                             "nothing to approve")
        actual, count = compute_manifest_hash(conn, batch.batch_id, period, batch.policy)
        if actual != batch.manifest_hash or count != batch.item_count:
            raise BatchError(f"batch {batch.batch_id} changed since it was built (hash {actual[:16]} != "
                             f"{batch.manifest_hash[:16]}); rebuild and review it again")
        if expected_hash and not batch.manifest_hash.startswith(expected_hash):
            raise BatchError(f"batch {batch.batch_id} has manifest hash {batch.manifest_hash[:16]}, not the "
                             f"reviewed {expected_hash[:16]}; review the current manifest")
        approvers = _approvers(conn, batch)
        if approver in approvers:
            raise BatchError(f"{approver} already approved batch {batch.batch_id}; a second approval must come "
                             "from someone else")
        # Approvals are append-only; one per person per manifest (a rebuilt draft needs fresh approvals).
        conn.execute(text("INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash) "
                          "VALUES (:b, :by, :now, :h)"),
                     {"b": batch.batch_id, "by": approver, "now": now, "h": batch.manifest_hash})
        approvers.append(approver)
        required = required_approvals(conn, batch)
        if len(approvers) >= required:
            updated = conn.execute(text(
                "UPDATE payout_batch SET status = 'approved', approved_by = :by, approved_at = :now "
                "WHERE batch_id = :b AND status = 'draft' AND manifest_hash = :h"),
                {"by": ", ".join(approvers), "now": now, "b": batch.batch_id, "h": batch.manifest_hash})
            if updated.rowcount != 1:
                raise BatchError(f"batch {batch.batch_id} changed concurrently; look again before approving")
        return Approval(load_batch(conn, period), approvers, required)


def _approvers(conn: sa.Connection, batch: Batch) -> list[str]:
    return list(conn.execute(text("SELECT approved_by FROM batch_approval WHERE batch_id = :b AND manifest_hash = :h "
                                  "ORDER BY approved_at"), {"b": batch.batch_id, "h": batch.manifest_hash}).scalars())
