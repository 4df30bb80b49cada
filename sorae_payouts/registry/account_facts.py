"""Which Stripe account pays: facts learned from Stripe (`GET /v1/account`), recorded once in the ledger.

A program's reference (`env:VAR`, `secrets:<entry>`, or none for the platform key) says where its key
is read from; which account that key belongs to is Stripe's answer. The first time a program's key is
used, its account id is recorded (`program.paying_account_id`, with a `program_event`); from then on a
key that resolves to any other account is refused, naming both accounts, by every command that builds
the program's gateway (`paying_accounts.ProgramGateways`): execute, retry, refresh, reconcile, recover,
fund. The platform key's account is recorded the same way (`platform_account`, one row): a program whose
account is the platform's shares the platform balance, whatever its reference says.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.registry.programs import Program

PLATFORM = "platform"


class PayingAccountError(PayoutRefused):
    """The program's paying account cannot be used; the message names the reference, never a key."""


def describe_paying_account(program: Program) -> str:
    """What an operator may read: `platform` or the reference (`env:VAR`, `secrets:<entry>`)."""
    return program.paying_account_ref or PLATFORM


def check_program_account(engine: sa.Engine, program: Program, account_id: str) -> str:
    """Record the account the program's key resolved to on its first use, or refuse a key of another
    account than the one recorded. Returns the program's account id."""
    recorded = program.paying_account_id
    if recorded is None:
        with engine.begin() as conn:
            # Compare-and-set: a concurrent first use that got there first decides, and is compared below.
            if conn.execute(
                text("UPDATE program SET paying_account_id = :a WHERE program_id = :p AND paying_account_id IS NULL"),
                {"a": account_id, "p": program.program_id},
            ).rowcount:
                _record_event(conn, program, account_id)
            recorded = conn.execute(
                text("SELECT paying_account_id FROM program WHERE program_id = :p"), {"p": program.program_id}
            ).scalar_one()
    if recorded != account_id:
        source = describe_paying_account(program)
        raise PayingAccountError(
            f"program {program.program_id} pays from Stripe account {recorded}, but its key "
            f"({'STRIPE_API_KEY' if source == 'platform' else source}) belongs to {account_id}: put the right key "
            f"there, or re-point the program (`programs update {program.program_id} --pays ...`); nothing was done"
        )
    return account_id


def check_platform_account(engine: sa.Engine, account_id: str) -> str:
    """Record the platform key's account the first time it is learned, or refuse another one."""
    with engine.begin() as conn:
        row = conn.execute(text("SELECT account_id, recorded_at FROM platform_account WHERE singleton = 1")).first()
        if row is None:
            conn.execute(
                text("INSERT INTO platform_account (singleton, account_id, recorded_at) VALUES (1, :a, :now)"),
                {"a": account_id, "now": datetime.now(UTC)},
            )
            return account_id
    if row.account_id != account_id:
        raise PayingAccountError(
            f"this ledger's platform account is Stripe account {row.account_id} (recorded "
            f"{as_utc(row.recorded_at):%Y-%m-%d}), but STRIPE_API_KEY belongs to {account_id}: set the platform "
            "account's key; nothing was done"
        )
    return account_id


def recorded_platform_account(conn: sa.Connection) -> str | None:
    return conn.execute(text("SELECT account_id FROM platform_account WHERE singleton = 1")).scalar()


def _record_event(conn: sa.Connection, program: Program, account_id: str) -> None:
    from sorae_payouts.core.origin import Origin

    origin = Origin.here()
    conn.execute(
        text(
            "INSERT INTO program_event (program_id, event, change, recorded_by, recorded_at, host, os_user) "
            "VALUES (:p, 'updated', :c, 'stripe: first use of the key', :now, :h, :u)"
        ),
        {
            "p": program.program_id,
            "c": json.dumps({"paying_account_id": [None, account_id], "reference": describe_paying_account(program)}),
            "now": datetime.now(UTC),
            "h": origin.host,
            "u": origin.os_user,
        },
    )
