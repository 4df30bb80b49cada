"""Reading payout batches (used by the CLI and the Dagster layer); approving them is `approvals.py`.

A batch belongs to one program (one per program and month); `load_batch` reads one program's batch of
a month, `list_batches` lists one program's batches or every program's, with filters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import period_key
from sorae_payouts.ledger.sql import as_date, as_utc, text
from sorae_payouts.registry.programs import DEFAULT_PROGRAM


class BatchError(PayoutRefused):
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
    program_id: str = DEFAULT_PROGRAM

    def as_json(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "program_id": self.program_id,
            "period": period_key(self.period),
            "status": self.status,
            "manifest_hash": self.manifest_hash,
            "item_count": self.item_count,
            "policy": self.policy,
            "built_at": self.built_at.isoformat(),
            "approved_at": self.approved_at.isoformat() if self.approved_at else None,
            "approved_by": self.approved_by,
        }


_BATCH_SELECT = (
    "SELECT batch_id, period, status, manifest_hash, item_count, policy, built_at, approved_at, "
    "approved_by, program_id FROM payout_batch"
)


def _batch(row) -> Batch:
    policy = row.policy if isinstance(row.policy, dict) else json.loads(row.policy)
    return Batch(
        row.batch_id,
        as_date(row.period),
        row.status,
        row.manifest_hash,
        int(row.item_count),
        policy,
        as_utc(row.built_at),
        as_utc(row.approved_at) if row.approved_at else None,
        row.approved_by,
        row.program_id,
    )


def load_batch(conn: sa.Connection, period: date, *, program_id: str = DEFAULT_PROGRAM) -> Batch:
    row = conn.execute(
        text(f"{_BATCH_SELECT} WHERE program_id = :program AND period = :period"),
        {"program": program_id, "period": period},
    ).first()
    if row is None:
        of = "" if program_id == DEFAULT_PROGRAM else f" of program {program_id}"
        raise BatchError(f"no payout batch for {period_key(period)}{of}; materialize payout_manifest for it first")
    return _batch(row)


def list_batches(
    conn: sa.Connection,
    program_id: str | None = None,
    *,
    status: str | tuple[str, ...] | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
) -> list[Batch]:
    """Batches by period, then program: one program's (`program_id`) or every program's (None),
    optionally only those in `status` (one or several) and within [period_from, period_to]."""
    where, params = [], {}
    if program_id is not None:
        where.append("program_id = :program")
        params["program"] = program_id
    if status is not None:
        statuses = (status,) if isinstance(status, str) else tuple(status)
        where.append(f"status IN ({', '.join(f':s{i}' for i in range(len(statuses)))})")
        params.update({f"s{i}": s for i, s in enumerate(statuses)})
    for name, op, value in (("period_from", ">=", period_from), ("period_to", "<=", period_to)):
        if value is not None:
            where.append(f"period {op} :{name}")
            params[name] = value
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    # Dates typed, so SQLite compares them in the text form its DATE columns hold.
    statement = text(f"{_BATCH_SELECT}{clause} ORDER BY period, program_id").bindparams(
        *(sa.bindparam(n, type_=sa.Date()) for n in ("period_from", "period_to") if n in params)
    )
    return [_batch(r) for r in conn.execute(statement, params)]


def manifest_preview(conn: sa.Connection, batch_id: str, limit: int = 50) -> list[dict]:
    """The largest items of the batch, for a quick look in the Dagster UI."""
    rows = conn.execute(
        text(
            "SELECT affiliate_id, currency, amount_minor, status, carry_reason, stripe_account_id FROM payout_item "
            "WHERE batch_id = :b ORDER BY status DESC, amount_minor DESC, affiliate_id LIMIT :n"
        ),
        {"b": batch_id, "n": limit},
    ).mappings()
    return [
        {**r, "amount_minor": int(r["amount_minor"]), "amount": format_minor(r["amount_minor"], r["currency"])}
        for r in rows
    ]


def settle_batch_status(conn: sa.Connection, batch_id: str) -> str:
    """What an executed batch honestly is (see `item_states`):
    `partially_completed` while a run still has something to send (a pending item without a hold, or an
    attempt whose outcome is unknown); `completed` only when every payable item is posted;
    otherwise `completed_with_exceptions` (failed, held, blocked, reversed or carried-on items)."""
    counts = dict(
        conn.execute(
            text(
                "SELECT CASE WHEN status = 'processing' OR (status = 'pending' AND hold_reason IS NULL) THEN 'open' "
                "WHEN status = 'posted' THEN 'posted' ELSE 'exception' END AS k, COUNT(*) FROM payout_item "
                "WHERE batch_id = :b AND carry_reason IS NULL GROUP BY k"
            ),
            {"b": batch_id},
        ).all()
    )
    status = (
        "partially_completed"
        if counts.get("open")
        else "completed_with_exceptions"
        if counts.get("exception")
        else "completed"
    )
    conn.execute(
        text("UPDATE payout_batch SET status = :s WHERE batch_id = :b AND status <> 'draft' AND status <> :s"),
        {"s": status, "b": batch_id},
    )
    return status
