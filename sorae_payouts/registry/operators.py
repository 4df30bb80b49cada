"""The operator registry: the people who may approve payout batches.

An operator is one identity, whatever its spelling: `alice`, `ALICE`, ` Alice ` and the full-width
`ａｌｉｃｅ` are the same person (Unicode NFKC, case-folded, trimmed, inner whitespace collapsed). An
email is one identity as a whole (`alice@corp` is not `alice`; register the spelling people use).
The registry lives in the ledger (`operator`, one row per identity with its current status) with an
append-only history (`operator_event`: added / disabled / enabled, by whom, when, from where); the
database refuses deleting operators and editing or deleting their history.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.origin import Origin
from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.registry.programs import DEFAULT_PROGRAM


class OperatorError(PayoutRefused):
    """The operator operation is refused; the message says why."""


def normalize_identity(name: str) -> str:
    """The identity behind a spelling: NFKC (full-width and compatibility forms), case-folded, trimmed."""
    identity = " ".join(unicodedata.normalize("NFKC", name or "").casefold().split())
    # casefold can produce forms NFKC would change again (e.g. some ligatures); normalize once more.
    identity = unicodedata.normalize("NFKC", identity)
    if not identity:
        raise OperatorError("an operator identity must not be empty")
    return identity


@dataclass
class Operator:
    operator_id: str
    display_name: str
    status: str
    added_at: datetime
    added_by: str
    program_id: str = DEFAULT_PROGRAM

    def as_json(self) -> dict:
        return {
            "operator_id": self.operator_id,
            "display_name": self.display_name,
            "status": self.status,
            "added_at": self.added_at.isoformat(),
            "added_by": self.added_by,
            "program_id": self.program_id,
        }


def _operator(row) -> Operator:
    return Operator(row.operator_id, row.display_name, row.status, as_utc(row.added_at), row.added_by, row.program_id)


_SELECT = "SELECT operator_id, display_name, status, added_at, added_by, program_id FROM operator"


def find_operator(conn: sa.Connection, name: str, program_id: str = DEFAULT_PROGRAM) -> Operator | None:
    row = conn.execute(
        text(f"{_SELECT} WHERE program_id = :p AND operator_id = :o"), {"p": program_id, "o": normalize_identity(name)}
    ).first()
    return _operator(row) if row else None


def list_operators(conn: sa.Connection, program_id: str = DEFAULT_PROGRAM) -> list[Operator]:
    return [
        _operator(r)
        for r in conn.execute(text(f"{_SELECT} WHERE program_id = :p ORDER BY operator_id"), {"p": program_id})
    ]


def require_active(conn: sa.Connection, name: str, program_id: str = DEFAULT_PROGRAM) -> Operator:
    """The active registered operator behind `name`, or a refusal that says what to do."""
    operator = find_operator(conn, name, program_id)
    if operator is None:
        raise OperatorError(
            f"{name.strip()!r} is not a registered operator; an administrator registers people "
            "with `sorae-payouts operators add`"
        )
    if operator.status != "active":
        raise OperatorError(f"operator {operator.operator_id!r} is {operator.status}")
    return operator


def add_operator(
    engine: sa.Engine,
    name: str,
    *,
    display_name: str | None = None,
    added_by: str,
    now: datetime,
    origin: Origin | None = None,
    program_id: str = DEFAULT_PROGRAM,
) -> Operator:
    identity = normalize_identity(name)
    actor = normalize_identity(added_by)
    with engine.begin() as conn:
        if find_operator(conn, identity, program_id) is not None:
            raise OperatorError(f"operator {identity!r} is already registered (spellings are one identity)")
        conn.execute(
            text(
                "INSERT INTO operator (program_id, operator_id, display_name, status, added_at, added_by) "
                "VALUES (:p, :o, :d, 'active', :now, :by)"
            ),
            {"p": program_id, "o": identity, "d": (display_name or name).strip(), "now": now, "by": actor},
        )
        _record(conn, program_id, identity, "added", actor, now, origin)
        return find_operator(conn, identity, program_id)


def ensure_operator(
    engine: sa.Engine,
    name: str,
    *,
    added_by: str,
    now: datetime,
    display_name: str | None = None,
    program_id: str = DEFAULT_PROGRAM,
) -> Operator:
    """The operator, registered (and active) if it was not: for demos and test set-ups."""
    with engine.connect() as conn:
        operator = find_operator(conn, name, program_id)
    if operator is None:
        return add_operator(engine, name, display_name=display_name, added_by=added_by, now=now, program_id=program_id)
    if operator.status != "active":
        return set_operator_status(engine, name, active=True, changed_by=added_by, now=now, program_id=program_id)
    return operator


def set_operator_status(
    engine: sa.Engine,
    name: str,
    *,
    active: bool,
    changed_by: str,
    now: datetime,
    origin: Origin | None = None,
    program_id: str = DEFAULT_PROGRAM,
) -> Operator:
    """Disable or re-enable an operator (never deleted: approvals refer to them)."""
    identity = normalize_identity(name)
    actor = normalize_identity(changed_by)
    status, event = ("active", "enabled") if active else ("disabled", "disabled")
    with engine.begin() as conn:
        operator = find_operator(conn, identity, program_id)
        if operator is None:
            raise OperatorError(f"{identity!r} is not a registered operator")
        if operator.status == status:
            raise OperatorError(f"operator {identity!r} is already {status}")
        conn.execute(
            text("UPDATE operator SET status = :s WHERE program_id = :p AND operator_id = :o"),
            {"s": status, "p": program_id, "o": identity},
        )
        _record(conn, program_id, identity, event, actor, now, origin)
        return find_operator(conn, identity, program_id)


def _record(conn, program_id, identity, event, actor, now, origin: Origin | None) -> None:
    origin = origin or Origin.here()
    conn.execute(
        text(
            "INSERT INTO operator_event (program_id, operator_id, event, recorded_by, recorded_at, host, "
            "os_user, dagster_run_id) VALUES (:p, :o, :e, :by, :now, :host, :user, :run)"
        ),
        {
            "p": program_id,
            "o": identity,
            "e": event,
            "by": actor,
            "now": now,
            "host": origin.host,
            "user": origin.os_user,
            "run": origin.dagster_run_id,
        },
    )


def was_active_at(conn: sa.Connection, identity: str, at: datetime, program_id: str = DEFAULT_PROGRAM) -> bool:
    """Whether the operator was registered and active at `at`, from the append-only history."""
    event = conn.execute(
        text(
            "SELECT event FROM operator_event WHERE program_id = :p AND operator_id = :o AND recorded_at <= :now "
            "ORDER BY recorded_at DESC, event_pk DESC LIMIT 1"
        ),
        {"p": program_id, "o": identity, "now": at},
    ).scalar()
    return event in ("added", "enabled")
