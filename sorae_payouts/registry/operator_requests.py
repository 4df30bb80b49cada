"""Registry requests as the operators see them: one pending or confirmed change, and the pending list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.registry.operators import OperatorError


@dataclass(frozen=True)
class Request:
    request_pk: int
    program_id: str
    kind: str
    subject: str | None
    display_name: str | None
    key_id: str | None
    public_key: str | None
    policy_value: str | None
    requested_by: str
    requester_key_id: str
    requested_at: datetime
    signature: str
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None

    def describe(self) -> str:
        what = {
            "add": f"add {self.subject} ({self.display_name}) with key {str(self.key_id)[:16]}",
            "enable": f"enable {self.subject}",
            "rename": f"rename {self.subject} to {self.display_name!r}",
            "rekey": f"re-key {self.subject} to key {str(self.key_id)[:16]}",
            "disable": f"disable {self.subject}",
            "policy": f"set the dual-approval thresholds to {self.policy_value or 'the deployment default'}",
        }[self.kind]
        return f"#{self.request_pk} {what}, requested by {self.requested_by} at {self.requested_at:%Y-%m-%d %H:%M} UTC"

    def as_json(self) -> dict:
        return {
            "request_pk": self.request_pk,
            "program_id": self.program_id,
            "kind": self.kind,
            "subject": self.subject,
            "display_name": self.display_name,
            "key_id": self.key_id,
            "policy": json.loads(self.policy_value) if self.policy_value else None,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "confirmed_by": self.confirmed_by,
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "description": self.describe(),
        }


def load_request(conn, program_id: str, request_pk: int) -> Request:
    row = conn.execute(
        text(
            "SELECT r.request_pk, r.program_id, r.kind, r.subject, r.display_name, r.key_id, r.public_key, "
            "r.policy_value, r.requested_by, r.requester_key_id, r.requested_at, r.signature, c.confirmed_by, "
            "c.confirmed_at FROM operator_request r LEFT JOIN operator_confirmation c ON c.request_pk = r.request_pk "
            "WHERE r.request_pk = :r"
        ),
        {"r": request_pk},
    ).first()
    if row is None or row.program_id != program_id:
        raise OperatorError(f"program {program_id} has no registry request #{request_pk} (see `operators pending`)")
    return _request(row)


def _request(row) -> Request:
    return Request(
        int(row.request_pk),
        row.program_id,
        row.kind,
        row.subject,
        row.display_name,
        row.key_id,
        row.public_key,
        row.policy_value,
        row.requested_by,
        row.requester_key_id,
        as_utc(row.requested_at),
        row.signature,
        row.confirmed_by,
        as_utc(row.confirmed_at) if row.confirmed_at else None,
    )


def pending_requests(conn: sa.Connection, program_id: str) -> list[Request]:
    rows = conn.execute(
        text(
            "SELECT r.request_pk, r.program_id, r.kind, r.subject, r.display_name, r.key_id, r.public_key, "
            "r.policy_value, r.requested_by, r.requester_key_id, r.requested_at, r.signature, "
            "NULL AS confirmed_by, NULL AS confirmed_at FROM operator_request r WHERE r.program_id = :p "
            "AND r.kind <> 'disable' AND NOT EXISTS (SELECT 1 FROM operator_confirmation c "
            "WHERE c.request_pk = r.request_pk) ORDER BY r.request_pk"
        ),
        {"p": program_id},
    )
    return [_request(r) for r in rows]
