"""The operator registry: the people who may approve payout batches.

An operator is one identity, whatever its spelling: `alice`, `ALICE`, ` Alice ` and the full-width
`ａｌｉｃｅ` are the same person (Unicode NFKC, case-folded, trimmed, inner whitespace collapsed). An
email is one identity as a whole (`alice@corp` is not `alice`; register the spelling people use).
The registry lives in the ledger (`operator`, one row per identity with its current status and key)
with an append-only history (`operator_event`: added / disabled / enabled, by whom, when, from where);
the database refuses deleting operators and editing or deleting their history.

An operator acts by signing with their own key (`core.signing`, `operator_keys`): `require_signer`
finds the operator from the key, never from a typed name. Registering, enabling, renaming and re-keying
operators, and changing a program's approval thresholds, are requests confirmed by a second operator
(`operator_changes`); what the signed history says is verified again before money moves
(`operator_history`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.origin import Origin
from sorae_payouts.core.signing import SigningKey
from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.registry.operator_keys import OPERATOR_KEY_SETTING
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
    key_id: str | None = None  # the current signing key (None: registered before keys, cannot sign)

    def as_json(self) -> dict:
        return {
            "operator_id": self.operator_id,
            "display_name": self.display_name,
            "status": self.status,
            "added_at": self.added_at.isoformat(),
            "added_by": self.added_by,
            "program_id": self.program_id,
            "key_id": self.key_id,
        }


def _operator(row) -> Operator:
    return Operator(
        row.operator_id, row.display_name, row.status, as_utc(row.added_at), row.added_by, row.program_id, row.key_id
    )


_SELECT = "SELECT operator_id, display_name, status, added_at, added_by, program_id, key_id FROM operator"


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
    """The active registered operator behind `name` (not who is acting: see `require_signer`), or a refusal."""
    operator = find_operator(conn, name, program_id)
    if operator is None:
        raise OperatorError(
            f"{name.strip()!r} is not a registered operator of program {program_id}; operators are "
            "registered with `sorae-payouts operators add` (confirmed by a second operator)"
        )
    if operator.status != "active":
        raise OperatorError(f"operator {operator.operator_id!r} is {operator.status}")
    return operator


def operator_for_key(conn: sa.Connection, program_id: str, key_id: str) -> Operator | None:
    """The operator of the program whose CURRENT key is `key_id` (keys are unique within a program)."""
    row = conn.execute(text(f"{_SELECT} WHERE program_id = :p AND key_id = :k"), {"p": program_id, "k": key_id}).first()
    return _operator(row) if row else None


def require_signer(conn: sa.Connection, program_id: str, key: SigningKey, *, acting_as: str | None = None) -> Operator:
    """The active operator of the program holding `key` (their current key), or a refusal. `acting_as`,
    when given (a `--by`), must name that same operator: a typed name never chooses who signs."""
    operator = operator_for_key(conn, program_id, key.key_id)
    if operator is None:
        raise OperatorError(
            f"the key in {OPERATOR_KEY_SETTING} (key id {key.key_id[:16]}) is not the current key of an operator "
            f"of program {program_id}; an operator gets a key with `sorae-payouts operators keygen` and is "
            "registered by a confirmed `operators add` (or the administrator's `operators bootstrap`)"
        )
    if operator.status != "active":
        raise OperatorError(f"operator {operator.operator_id!r} of program {program_id} is {operator.status}")
    if acting_as is not None and acting_as.strip() and normalize_identity(acting_as) != operator.operator_id:
        raise OperatorError(
            f"--by names {acting_as.strip()!r} but the key in {OPERATOR_KEY_SETTING} is {operator.operator_id!r}'s; "
            "an operator acts with their own key only"
        )
    return operator


def record_event(conn, program_id, identity, event, actor, now, origin: Origin | None) -> None:
    """Append to the registry's history (`operator_event`: added / disabled / enabled)."""
    _record(conn, program_id, identity, event, actor, now, origin)


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
