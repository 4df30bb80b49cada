"""Programs: one per merchant. The program registry (`program`, current values) and its append-only
history (`program_event`: added / updated / disabled / enabled, with the change, by whom, from where).

A program has an id (part of partition keys, transfer groups and idempotency keys, so it is short,
lowercase and never changes), a name, who pays it and its policy:
- `paying_account_ref`: None pays from Sorae's platform account (STRIPE_API_KEY); otherwise a
  reference to the merchant's own secret key, `env:VAR` or `secrets:<entry>` (`paying_accounts`),
  never a key: the ledger and Dagster see the reference only.
- `policy`: overrides of the deployment's policy (`PayoutSettings`), applied key by key:
  `holding_days`, `minimum_minor` ({currency: minor}), `default_minimum_minor`,
  `dual_approval_over_minor`, `negative_balance`, `first_period` ("YYYY-MM"). A batch freezes the
  effective policy it was built with, as before.

The ledger created before programs existed is the program `default` (revision 0012): a
single-merchant deployment, its files and its commands work unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.ledger.sql import as_utc, set_text, text

DEFAULT_PROGRAM = "default"
# Lowercase letters, digits, '-' and '_': safe in Dagster partition keys (no '|' or ','), transfer
# groups, idempotency keys (kept as they are) and file names.
PROGRAM_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
POLICY_KEYS = (
    "holding_days",
    "minimum_minor",
    "default_minimum_minor",
    "dual_approval_over_minor",
    "negative_balance",
    "first_period",
)
# Changed only through a confirmed policy request (registry/operator_changes.py; guarded by revision 0050).
APPROVAL_POLICY_KEY = "dual_approval_over_minor"
_ENV_REF = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]{0,127}")
_SECRETS_REF = re.compile(r"secrets:[A-Za-z0-9_.-]{1,128}")
_LOOKS_LIKE_KEY = re.compile(r"(sk|rk|pk)_(live|test)_", re.IGNORECASE)


class ProgramError(PayoutRefused):
    """The program operation is refused; the message says why."""


@dataclass(frozen=True)
class Program:
    program_id: str
    name: str
    paying_account_ref: str | None
    policy: dict = field(default_factory=dict)
    status: str = "active"
    created_at: datetime | None = None
    created_by: str | None = None
    # The Stripe account its key resolved to when first used (`registry/account_facts`); None until then.
    paying_account_id: str | None = None

    @property
    def pays_from_platform(self) -> bool:
        return self.paying_account_ref is None

    def as_json(self) -> dict:
        return {
            "program_id": self.program_id,
            "name": self.name,
            "paying_account": self.paying_account_ref or "platform",
            "paying_account_id": self.paying_account_id,  # learned from Stripe at the key's first use
            "policy": self.policy,
            "status": self.status,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "created_by": self.created_by,
        }


def validate_program_id(program_id: str) -> str:
    if not isinstance(program_id, str) or not PROGRAM_ID.fullmatch(program_id):
        raise ProgramError(
            f"program id {program_id!r} must be 1-48 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return program_id


def validate_paying_account_ref(ref: str | None) -> str | None:
    """`None`/"platform" (Sorae's account), `env:VAR` or `secrets:<entry>`; a key itself is refused."""
    if ref is None or ref == "platform":
        return None
    if _LOOKS_LIKE_KEY.search(ref):
        raise ProgramError(
            "a paying account is named by a reference to a secret (env:VAR or secrets:<entry>), "
            "never by the key itself; the value given looks like a Stripe key and was not stored"
        )
    if not (_ENV_REF.fullmatch(ref) or _SECRETS_REF.fullmatch(ref)):
        raise ProgramError("paying account must be 'platform', 'env:VARIABLE_NAME' or 'secrets:<entry>'")
    return ref


def validate_policy(policy: dict) -> dict:
    unknown = sorted(set(policy) - set(POLICY_KEYS))
    if unknown:
        raise ProgramError(f"unknown policy keys {unknown}; allowed: {', '.join(POLICY_KEYS)}")
    for key in ("minimum_minor", "dual_approval_over_minor"):
        for currency, amount in (policy.get(key) or {}).items():
            if currency != currency.lower() or not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                raise ProgramError(
                    f"policy {key}: {currency}={amount!r} must be a lowercase currency and "
                    "a non-negative integer amount in minor units"
                )
    for key in ("holding_days", "default_minimum_minor"):
        value = policy.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ProgramError(f"policy {key} must be a non-negative integer")
    if policy.get("first_period") is not None:
        from sorae_payouts.core.periods import parse_period

        try:
            parse_period(policy["first_period"])
        except ValueError as exc:
            raise ProgramError(f"policy first_period: {exc}") from None
    return policy


def _program(row) -> Program:
    policy = row.policy if isinstance(row.policy, dict) else json.loads(row.policy or "{}")
    return Program(
        row.program_id,
        row.name,
        row.paying_account_ref,
        policy,
        row.status,
        as_utc(row.created_at),
        row.created_by,
        row.paying_account_id,
    )


_SELECT = (
    "SELECT program_id, name, paying_account_ref, policy, status, created_at, created_by, paying_account_id "
    "FROM program"
)


def find_program(conn: sa.Connection, program_id: str) -> Program | None:
    row = conn.execute(text(f"{_SELECT} WHERE program_id = :p"), {"p": program_id}).first()
    return _program(row) if row else None


def get_program(conn: sa.Connection, program_id: str) -> Program:
    program = find_program(conn, program_id)
    if program is None:
        raise ProgramError(
            f"unknown program {program_id!r}; `sorae-payouts programs list` shows them, "
            "`sorae-payouts programs add` registers one"
        )
    return program


def require_active_program(conn: sa.Connection, program_id: str) -> Program:
    program = get_program(conn, program_id)
    if program.status != "active":
        raise ProgramError(f"program {program_id!r} is disabled")
    return program


def list_programs(conn: sa.Connection, *, active_only: bool = False) -> list[Program]:
    where = " WHERE status = 'active'" if active_only else ""
    return [_program(r) for r in conn.execute(text(f"{_SELECT}{where} ORDER BY program_id"))]


def add_program(
    engine: sa.Engine,
    program_id: str,
    *,
    name: str,
    paying_account_ref: str | None = None,
    policy: dict | None = None,
    added_by: str,
    now: datetime,
    origin=None,
) -> Program:
    validate_program_id(program_id)
    ref = validate_paying_account_ref(paying_account_ref)
    overrides = validate_policy(dict(policy or {}))
    if not name or not name.strip():
        raise ProgramError("a program needs a name")
    with engine.begin() as conn:
        if find_program(conn, program_id) is not None:
            raise ProgramError(f"program {program_id!r} already exists")
        conn.execute(
            text(
                "INSERT INTO program (program_id, name, paying_account_ref, policy, status, created_at, "
                "created_by) VALUES (:p, :n, :r, :pol, 'active', :now, :by)"
            ),
            {
                "p": program_id,
                "n": name.strip(),
                "r": ref,
                "pol": json.dumps(overrides, sort_keys=True),
                "now": now,
                "by": added_by,
            },
        )
        _record(
            conn,
            program_id,
            "added",
            {"name": name.strip(), "paying_account": ref or "platform", "policy": overrides},
            added_by,
            now,
            origin,
        )
        return get_program(conn, program_id)


_UNSET = object()


def update_program(
    engine: sa.Engine,
    program_id: str,
    *,
    changed_by: str,
    now: datetime,
    name: str | None = None,
    paying_account_ref=_UNSET,
    policy_changes: dict | None = None,
    policy_removals: tuple[str, ...] = (),
    origin=None,
) -> Program:
    """Change a program's name, paying account or policy overrides; the change is appended to its
    history. Batches already built keep the policy they froze; the next build uses the new one."""
    if APPROVAL_POLICY_KEY in (policy_changes or {}) or APPROVAL_POLICY_KEY in policy_removals:
        raise ProgramError(
            f"a program's dual-approval thresholds change only with a second operator's confirmation: "
            f"`sorae-payouts operators request-policy --program {program_id} --dual-approval-over CUR=AMOUNT` "
            "(or --unset), then another operator runs `operators confirm`"
        )
    with engine.begin() as conn:
        current = get_program(conn, program_id)
        change: dict = {}
        values: dict = {}
        if name is not None and name.strip() != current.name:
            change["name"], values["name"] = [current.name, name.strip()], name.strip()
        if paying_account_ref is not _UNSET:
            ref = validate_paying_account_ref(paying_account_ref)
            if ref != current.paying_account_ref:
                change["paying_account"] = [current.paying_account_ref or "platform", ref or "platform"]
                values["paying_account_ref"] = ref
                # Re-pointed by an operator: the account is learned again from the new key at its first use.
                values["paying_account_id"] = None
        policy = {k: v for k, v in current.policy.items() if k not in policy_removals}
        policy.update(policy_changes or {})
        validate_policy(policy)
        if policy != current.policy:
            change["policy"], values["policy"] = [current.policy, policy], json.dumps(policy, sort_keys=True)
        if not change:
            raise ProgramError(f"nothing to change for program {program_id!r}")
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        conn.execute(
            text(f"UPDATE program SET {assignments} WHERE program_id = :program_id"),
            {**values, "program_id": program_id},
        )
        _record(conn, program_id, "updated", change, changed_by, now, origin)
        return get_program(conn, program_id)


def set_approval_thresholds(
    conn: sa.Connection, program_id: str, thresholds: dict | None, *, changed_by: str, now: datetime, origin=None
) -> None:
    """Write a CONFIRMED approval policy into the program's policy (the database refuses any other value
    than the latest confirmed `program_approval_policy` row). None removes the program's override."""
    current = get_program(conn, program_id)
    policy = {k: v for k, v in current.policy.items() if k != APPROVAL_POLICY_KEY}
    if thresholds is not None:
        policy[APPROVAL_POLICY_KEY] = thresholds
    validate_policy(policy)
    conn.execute(
        text("UPDATE program SET policy = :pol WHERE program_id = :p"),
        {"pol": json.dumps(policy, sort_keys=True), "p": program_id},
    )
    change = {"policy": [current.policy, policy]}
    _record(conn, program_id, "updated", change, changed_by, now, origin)


def set_program_status(
    engine: sa.Engine, program_id: str, *, active: bool, changed_by: str, now: datetime, origin=None
) -> Program:
    status, event = ("active", "enabled") if active else ("disabled", "disabled")
    with engine.begin() as conn:
        current = get_program(conn, program_id)
        if current.status == status:
            raise ProgramError(f"program {program_id!r} is already {status}")
        conn.execute(text("UPDATE program SET status = :s WHERE program_id = :p"), {"s": status, "p": program_id})
        _record(conn, program_id, event, {"status": [current.status, status]}, changed_by, now, origin)
        return get_program(conn, program_id)


def program_history(conn: sa.Connection, program_id: str) -> list[dict]:
    rows = conn.execute(
        text(
            "SELECT event, change, recorded_by, recorded_at, host, os_user FROM program_event "
            "WHERE program_id = :p ORDER BY recorded_at, event_pk"
        ),
        {"p": program_id},
    )
    return [
        {
            "event": r.event,
            "change": r.change if isinstance(r.change, dict) else json.loads(r.change),
            "recorded_by": r.recorded_by,
            "recorded_at": as_utc(r.recorded_at).isoformat(),
            "host": r.host,
            "os_user": r.os_user,
        }
        for r in rows
    ]


def _record(conn, program_id: str, event: str, change: dict, actor: str, now: datetime, origin) -> None:
    if origin is None:
        from sorae_payouts.core.origin import Origin

        origin = Origin.here()
    conn.execute(
        text(
            "INSERT INTO program_event (program_id, event, change, recorded_by, recorded_at, host, os_user) "
            "VALUES (:p, :e, :c, :by, :now, :h, :u)"
        ),
        {
            "p": program_id,
            "e": event,
            "c": json.dumps(change, sort_keys=True),
            "by": actor,
            "now": now,
            "h": origin.host,
            "u": origin.os_user,
        },
    )


def first_period_of(program: Program) -> date:
    """The program's first period: its policy's `first_period`, else the deployment's (SORAE_FIRST_PERIOD)."""
    from sorae_payouts.core.periods import first_period, parse_period

    raw = program.policy.get("first_period")
    return parse_period(raw) if raw else first_period()


def load_programs(conn: sa.Connection, program_ids: Sequence[str]) -> dict[str, Program]:
    """The registered programs of the set (one statement), by id."""
    rows = conn.execute(
        set_text(
            "SELECT program_id, name, paying_account_ref, policy, status, paying_account_id FROM program "
            "WHERE program_id IN :program_ids"
        ),
        {"program_ids": list(program_ids)},
    )
    return {
        r.program_id: Program(
            r.program_id,
            r.name,
            r.paying_account_ref,
            r.policy if isinstance(r.policy, dict) else json.loads(r.policy or "{}"),
            r.status,
            paying_account_id=r.paying_account_id,
        )
        for r in rows
    }
