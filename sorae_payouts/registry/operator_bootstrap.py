"""A program's first operators, registered by the deployment's administrator without a confirmation.

`bootstrap_operators` registers (or re-keys and enables) operators in one step, each with the public key
the person generated themselves (`operators keygen`): the administrator never holds a private key.
Only the database owner may (revision 0050): on PostgreSQL the owner role, the application's role is
refused by a trigger; on SQLite, which has no roles, once per program, while it has no operator key. A
bootstrap names how many keys it registers and no key can join it later. Everything after the
bootstrap is a request confirmed by a second operator (`operator_changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.core.origin import Origin
from sorae_payouts.ledger import schema
from sorae_payouts.registry.operator_changes import checked_key_id, origin_values, refused_by_database, utc
from sorae_payouts.registry.operators import Operator, OperatorError, find_operator, normalize_identity, record_event
from sorae_payouts.registry.programs import get_program


@dataclass(frozen=True)
class NewOperator:
    identity: str
    public_key: str
    display_name: str | None = None


def bootstrap_operators(
    engine: sa.Engine,
    program_id: str,
    operators: Sequence[NewOperator],
    *,
    recorded_by: str,
    now: datetime,
    origin: Origin | None = None,
) -> list[Operator]:
    """Register (or re-key and enable) operators without confirmation: the database owner's step."""
    now = utc(now)
    if not operators:
        raise OperatorError("a bootstrap names at least one operator")
    identities = [normalize_identity(o.identity) for o in operators]
    key_ids = [checked_key_id(o.public_key) for o in operators]
    if len(set(identities)) != len(identities) or len(set(key_ids)) != len(key_ids):
        raise OperatorError("each bootstrapped operator has their own identity and their own key")
    try:
        with engine.begin() as conn:
            get_program(conn, program_id)
            bootstrap_pk = conn.execute(
                schema.operator_bootstrap.insert()
                .values(
                    program_id=program_id,
                    operator_count=len(operators),
                    recorded_by=recorded_by,
                    recorded_at=now,
                    **origin_values(origin),
                )
                .returning(schema.operator_bootstrap.c.bootstrap_pk)
            ).scalar_one()
            for new, identity, key_id in zip(operators, identities, key_ids, strict=True):
                conn.execute(
                    schema.operator_key.insert().values(
                        program_id=program_id,
                        operator_id=identity,
                        key_id=key_id,
                        public_key=new.public_key.strip(),
                        registered_at=now,
                        bootstrap_pk=bootstrap_pk,
                    )
                )
                _bootstrap_one(conn, program_id, new, identity, key_id, bootstrap_pk, recorded_by, now, origin)
            return [find_operator(conn, identity, program_id) for identity in identities]
    except sa.exc.DBAPIError as exc:
        if "sorae ledger:" in str(exc.orig):
            raise refused_by_database(exc) from None
        if isinstance(exc, sa.exc.IntegrityError) and ("key_id" in str(exc.orig) or "uq_operator_key" in str(exc.orig)):
            raise OperatorError(f"a key is already registered in program {program_id} (one key, one person)") from None
        raise


def _bootstrap_one(conn, program_id, new: NewOperator, identity, key_id, bootstrap_pk, actor, now, origin) -> None:
    current = find_operator(conn, identity, program_id)
    name = (new.display_name or new.identity).strip()
    if current is None:
        conn.execute(
            schema.operator.insert().values(
                program_id=program_id,
                operator_id=identity,
                display_name=name,
                status="active",
                added_at=now,
                added_by=actor,
                key_id=key_id,
                bootstrap_pk=bootstrap_pk,
            )
        )
        record_event(conn, program_id, identity, "added", actor, now, origin)
        return
    conn.execute(
        schema.operator.update()
        .where(schema.operator.c.program_id == program_id, schema.operator.c.operator_id == identity)
        .values(
            key_id=key_id,
            bootstrap_pk=bootstrap_pk,
            status="active",
            display_name=new.display_name.strip() if new.display_name else current.display_name,
        )
    )
    if current.status != "active":
        record_event(conn, program_id, identity, "enabled", actor, now, origin)
