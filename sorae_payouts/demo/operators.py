"""The demo's operators: two per program, each with a signing key the demo generates into `data/`.

Demo only. In production every operator generates their own key (`operators keygen`) and the
administrator registers the public keys (`operators bootstrap`); here the demo plays both people and
the administrator, keeps their private keys in `data/demo-operator-keys/` (mode 0600) and signs its own
approvals with them. Re-running finds the same files and the same registered keys.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from sorae_payouts.core.signing import SigningKey
from sorae_payouts.registry.operator_bootstrap import NewOperator, bootstrap_operators
from sorae_payouts.registry.operator_keys import load_operator_key, write_private_key
from sorae_payouts.registry.operators import find_operator

DEMO_OPERATORS = ("demo-approver-1@sorae.example", "demo-approver-2@sorae.example")


def demo_operator_keys(engine: sa.Engine, program_id: str, key_dir: Path, *, now: datetime) -> list[SigningKey]:
    """The keys of the program's demo operators, registered by a bootstrap the first time."""
    key_dir.mkdir(parents=True, exist_ok=True)
    keys = []
    for number in range(1, len(DEMO_OPERATORS) + 1):
        path = key_dir / f"{program_id}-{number}.pem"
        keys.append(load_operator_key(str(path)) if path.exists() else _new_key(path))
    with engine.connect() as conn:
        registered = [find_operator(conn, name, program_id) for name in DEMO_OPERATORS]
    if all(
        o is not None and o.key_id == k.key_id and o.status == "active" for o, k in zip(registered, keys, strict=True)
    ):
        return keys
    new = [
        NewOperator(name, key.public_key, f"Demo approver {number}")
        for number, (name, key) in enumerate(zip(DEMO_OPERATORS, keys, strict=True), 1)
    ]
    bootstrap_operators(engine, program_id, new, recorded_by="demo", now=now)
    return keys


def _new_key(path: Path) -> SigningKey:
    key = SigningKey.generate()
    write_private_key(key, path)
    return key


_IN_MEMORY: dict[tuple[str, str], SigningKey] = {}


def approve_with_generated_keys(
    engine: sa.Engine, period, *, program_id: str, now: datetime, names: tuple[str, ...] = ("bench-1", "bench-2")
):
    """Benchmarks and scripted set-ups only: register `names` for the program with keys generated in this
    process (by a bootstrap, the first time) and approve its draft batch with them until it is approved."""
    from sorae_payouts.month_end.approvals import approve_batch
    from sorae_payouts.month_end.batches import load_batch

    keys = [_IN_MEMORY.setdefault((program_id, name), SigningKey.generate()) for name in names]
    with engine.connect() as conn:
        registered = [find_operator(conn, name, program_id) for name in names]
        reviewed = load_batch(conn, period, program_id=program_id).manifest_hash
    if not all(o is not None and o.key_id == k.key_id for o, k in zip(registered, keys, strict=True)):
        new = [NewOperator(name, key.public_key) for name, key in zip(names, keys, strict=True)]
        bootstrap_operators(engine, program_id, new, recorded_by="scripted", now=now)
    approval = None
    for key in keys:
        approval = approve_batch(engine, period, key=key, now=now, expected_hash=reviewed, program_id=program_id)
        if approval.complete:
            break
    return approval
