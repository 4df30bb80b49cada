"""Reading payout batches (used by the CLI and the Dagster layer); approving them is `approvals.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.ledger.sql import as_date, as_utc, text
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
