"""Test data written straight into the ledger through SQLAlchemy Core (the import path has its own
tests); amounts are integer minor units. Every helper writes the default program unless given
`program_id=` (register the program first with `add_program`)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import sqlalchemy as sa

from sorae_payouts.core.periods import period_of
from sorae_payouts.core.signing import SigningKey
from sorae_payouts.ledger import schema
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OCT = date(2026, 10, 1)
NOV = date(2026, 11, 1)
SEP = date(2026, 9, 1)
_ids = itertools.count(1)


def finalize_period(
    engine: sa.Engine, period: date, *, now: datetime, holding_days: int, program_id: str = DEFAULT_PROGRAM
):
    """One program's month through the engine's one (set) API: `finalize_programs` with a set of one,
    its refusal raised as FinalizeError."""
    from sorae_payouts.month_end.finalize import FinalizeError, finalize_programs

    return finalize_programs(engine, period, [program_id], now=now, holding_days=holding_days).one(
        program_id, FinalizeError
    )


def stripe_says_unpaid(program_id, candidates, into):
    """An answer to the month end's question "was this unpaid money paid at Stripe?" (`carry_check`) that
    says no, for domain tests without a sandbox; tests of the question itself ask the sandbox
    (`execution/test_money_once_owed.py`)."""
    from sorae_payouts.month_end.carry_check import StripeAnswer

    return StripeAnswer("acct_test", {c.payout_item_id: None for c in candidates}, [])


def build_manifest(
    engine: sa.Engine, period: date, *, policy, now: datetime, program_id: str = DEFAULT_PROGRAM, unpaid_check=None
):
    """One program's batch through `build_manifests` with a set of one, its refusal raised as ManifestError.
    `unpaid_check`: how unpaid items of earlier months are confirmed unpaid at Stripe before they are carried
    (`use_cases.month_end.unpaid_checker`); without it a build that would carry one is refused."""
    from sorae_payouts.month_end.manifest import ManifestError
    from sorae_payouts.month_end.manifest_build import build_manifests

    return build_manifests(engine, period, [program_id], policy=policy, now=now, unpaid_check=unpaid_check).one(
        program_id, ManifestError
    )


def add_program(
    engine: sa.Engine,
    program_id: str,
    *,
    name: str | None = None,
    policy: dict | None = None,
    paying_account_ref: str | None = None,
):
    """Register a program (one per merchant) the way operators do (`programs.add_program`)."""
    from sorae_payouts.registry.programs import add_program as register

    return register(
        engine,
        program_id,
        name=name or program_id.title(),
        policy=policy,
        paying_account_ref=paying_account_ref,
        added_by="test",
        now=REGISTERED_AT,
    )


def add_affiliate(
    engine: sa.Engine,
    affiliate_id: str,
    currency: str = "usd",
    account: str | None = "auto",
    *,
    program_id: str = DEFAULT_PROGRAM,
) -> str:
    with engine.begin() as conn:
        conn.execute(
            schema.affiliate.insert().values(
                program_id=program_id,
                affiliate_id=affiliate_id,
                name=affiliate_id.title(),
                email=f"{affiliate_id}@example.com",
                stripe_account_id=f"acct_{affiliate_id}" if account == "auto" else account,
                currency=currency,
                imported_at=NOW,
            )
        )
    return affiliate_id


def add_commission(
    engine: sa.Engine,
    affiliate_id: str,
    amount_minor: int,
    *,
    currency: str = "usd",
    earned_at: datetime | None = None,
    order_id: str | None = None,
    program_id: str = DEFAULT_PROGRAM,
    commission_id: str | None = None,
) -> str:
    n = next(_ids)
    earned_at = earned_at or datetime(2026, 10, 15, tzinfo=UTC)
    commission_id, order_id = commission_id or f"com_{n}", order_id or f"ord_{n}"
    with engine.begin() as conn:
        conn.execute(
            schema.commission.insert().values(
                program_id=program_id,
                commission_id=commission_id,
                affiliate_id=affiliate_id,
                order_id=order_id,
                amount_minor=amount_minor,
                currency=currency,
                earned_at=earned_at,
                period=period_of(earned_at),
                imported_at=NOW,
            )
        )
    return order_id


def add_event(
    engine: sa.Engine,
    order_id: str,
    kind: str,
    amount_minor: int | None = None,
    *,
    currency: str | None = "usd",
    occurred_at: datetime | None = None,
    program_id: str = DEFAULT_PROGRAM,
    event_id: str | None = None,
) -> str:
    event_id = event_id or f"evt_{next(_ids)}"
    with engine.begin() as conn:
        conn.execute(
            schema.order_event.insert().values(
                program_id=program_id,
                event_id=event_id,
                order_id=order_id,
                kind=kind,
                amount_minor=amount_minor,
                currency=currency if amount_minor is not None else None,
                occurred_at=occurred_at or datetime(2026, 10, 20, tzinfo=UTC),
                imported_at=NOW,
            )
        )
    return event_id


def items(engine: sa.Engine, batch_id: str) -> dict[tuple[str, str], dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.payout_item).where(schema.payout_item.c.batch_id == batch_id)).mappings()
        return {(r["affiliate_id"], r["currency"]): dict(r) for r in rows}


# Operators are registered "long ago", so they were active at any approval time a test uses.
REGISTERED_AT = datetime(2000, 1, 1, tzinfo=UTC)


# Registered with the first operators of every program the tests register operators in.
BOOTSTRAPPED = ("tests", "tests-second")
# Each test operator's private key, generated on first use (the person's own key, as `operators keygen`).
_KEYS: dict[tuple[str, str], SigningKey] = {}


def operator_key(name: str, program_id: str = DEFAULT_PROGRAM) -> SigningKey:
    """The signing key test operator `name` holds in the program (generated once per process)."""
    from sorae_payouts.registry.operators import normalize_identity

    return _KEYS.setdefault((program_id, normalize_identity(name)), SigningKey.generate())


def register_operators(
    engine: sa.Engine, *names: str, program_id: str = DEFAULT_PROGRAM, now: datetime = REGISTERED_AT
) -> None:
    """Register (or re-enable) operators of the program with their keys, as operators do: the program's
    first ones (with the two standard test operators, BOOTSTRAPPED) by the administrator's bootstrap;
    later ones by a request of an operator confirmed by another."""
    from sorae_payouts.registry.operator_bootstrap import NewOperator, bootstrap_operators
    from sorae_payouts.registry.operators import list_operators, normalize_identity

    with engine.connect() as conn:
        current = {o.operator_id: o for o in list_operators(conn, program_id)}
        has_keys = conn.execute(sa.text("SELECT 1 FROM operator_key WHERE program_id = :p"), {"p": program_id}).first()
    wanted = list(dict.fromkeys(normalize_identity(n) for n in names))
    todo = [n for n in wanted if n not in current or current[n].key_id != operator_key(n, program_id).key_id]
    to_enable = [n for n in wanted if n not in todo and current[n].status != "active"]
    if not todo and not to_enable:
        return
    if not has_keys:  # the two standard test operators join the first ones: they request and confirm later ones
        first = list(dict.fromkeys([*todo, *to_enable, *(n for n in BOOTSTRAPPED if n not in current)]))
        new = [NewOperator(n, operator_key(n, program_id).public_key) for n in first]
        bootstrap_operators(engine, program_id, new, recorded_by="tests", now=now)
        return
    for name in todo:
        kind = "add" if name not in current else "rekey"
        _confirmed_change(engine, program_id, kind, name, now, public_key=operator_key(name, program_id).public_key)
    for name in to_enable:
        _confirmed_change(engine, program_id, "enable", name, _after_last_disable(engine, program_id, name, now))


def _after_last_disable(engine, program_id: str, name: str, now: datetime) -> datetime:
    from datetime import timedelta

    with engine.connect() as conn:
        last = conn.execute(
            sa.text(
                "SELECT MAX(recorded_at) FROM operator_event WHERE program_id = :p AND operator_id = :o "
                "AND event = 'disabled'"
            ),
            {"p": program_id, "o": name},
        ).scalar()
    if last is None:
        return now
    from sorae_payouts.ledger.sql import as_utc

    return max(now, as_utc(last) + timedelta(microseconds=1))


def _confirmed_change(engine, program_id: str, kind: str, subject: str, now: datetime, **values) -> None:
    """A change requested by one test operator and confirmed by another (neither its subject)."""
    from sorae_payouts.registry.operator_changes import confirm_request, request_change
    from sorae_payouts.registry.operators import list_operators

    with engine.connect() as conn:
        signers = [
            o.operator_id
            for o in list_operators(conn, program_id)
            if o.status == "active"
            and o.operator_id != subject
            and o.key_id == _KEYS.get((program_id, o.operator_id), SigningKey.generate()).key_id
        ]
    if len(signers) < 2:
        raise AssertionError(
            f"program {program_id}: registering {subject!r} needs two active test operators to request and "
            f"confirm (have {signers}); register the program's operators together first"
        )
    requester, confirmer = signers[:2]
    request = request_change(
        engine, program_id, operator_key(requester, program_id), kind, subject=subject, now=now, **values
    )
    confirm_request(engine, program_id, request.request_pk, operator_key(confirmer, program_id), now=now)


def disable_operator(
    engine: sa.Engine, name: str, *, by: str, now: datetime = NOW, program_id: str = DEFAULT_PROGRAM
) -> None:
    """`by` (a registered test operator) disables `name` with their key."""
    from sorae_payouts.registry.operator_changes import disable_operator as disable

    disable(engine, program_id, name, operator_key(by, program_id), now=now)


def approve(engine: sa.Engine, period: date, *operators: str, now: datetime = NOW, program_id: str = DEFAULT_PROGRAM):
    """Approve the program's batch of the period as each operator in turn, signing with their keys
    (registering them for the program first), with the batch's current manifest hash, until the batch
    is approved. Returns the last Approval."""
    from sorae_payouts.month_end.approvals import approve_batch
    from sorae_payouts.month_end.batches import load_batch

    operators = operators or ("tests", "tests-second")
    register_operators(engine, *operators, program_id=program_id)
    with engine.connect() as conn:
        reviewed = load_batch(conn, period, program_id=program_id).manifest_hash
    approval = None
    for operator in operators:
        approval = approve_batch(
            engine,
            period,
            key=operator_key(operator, program_id),
            now=now,
            expected_hash=reviewed,
            program_id=program_id,
        )
        if approval.complete:
            break
    return approval


def decide_reversal(
    engine: sa.Engine,
    item_id: int,
    decision: str,
    *,
    by: str = "tests",
    reason: str | None = None,
    now: datetime = NOW,
    program_id: str = DEFAULT_PROGRAM,
):
    """`by`, an operator of the item's program (registered with their key if needed), decides the item's
    pending reversed amount, signing the decision."""
    from sorae_payouts.aftercare.reversals import resolve_reversal

    register_operators(engine, by, program_id=program_id)
    return resolve_reversal(
        engine, item_id, decision, program_id=program_id, key=operator_key(by, program_id), reason=reason, now=now
    )


def use_operator_key(monkeypatch, tmp_path, name: str, program_id: str = DEFAULT_PROGRAM):
    """Act as test operator `name` in CLI calls: their key in a 0600 file named by SORAE_OPERATOR_KEY."""
    from sorae_payouts.registry.operator_keys import OPERATOR_KEY_SETTING, write_private_key

    path = tmp_path / f"operator-key-{program_id}-{name.replace('@', '_')}.pem"
    if not path.exists():
        write_private_key(operator_key(name, program_id), path)
    monkeypatch.setenv(OPERATOR_KEY_SETTING, str(path))
    return path
