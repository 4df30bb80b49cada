"""Reading and approving payout batches (used by the CLI and the Dagster layer).

Approval records who approved, when, and the manifest hash they saw. It refuses a batch whose items
no longer produce the recorded hash (the manifest changed after it was built) or a hash other than
the one the approver reviewed.
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


def approve_batch(engine: sa.Engine, period: date, *, approved_by: str, now: datetime,
                  expected_hash: str | None = None) -> Batch:
    """Approve a draft batch: verify the manifest is still what was built, record who and when."""
    if not approved_by.strip():
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
        updated = conn.execute(text(
            "UPDATE payout_batch SET status = 'approved', approved_by = :by, approved_at = :now "
            "WHERE batch_id = :b AND status = 'draft' AND manifest_hash = :h"),
            {"by": approved_by.strip(), "now": now, "b": batch.batch_id, "h": batch.manifest_hash})
        if updated.rowcount != 1:
            raise BatchError(f"batch {batch.batch_id} changed concurrently; look again before approving")
        return load_batch(conn, period)
