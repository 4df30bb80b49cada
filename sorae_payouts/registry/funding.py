"""Each program's own money on a shared platform account: the funding ledger and what it allows.

When several active programs pay from Sorae's platform account, the platform balance mixes their
money, and a program may spend only what funded it. The ledger keeps that money (`program_funding`,
append-only): the Stripe charges and top-ups that funded each program, recorded from Stripe itself
(`record_funding`: the object must exist on the program's paying account and have succeeded; amount
and currency are Stripe's, never the operator's). One charge or top-up funds one program, once.

Available funding, per currency (`available_funding`) = funded - spent, where spent is what the
program's live attempts (`processing` or `posted`) took:
- every attempt drawn on one of its charges (`source_transaction`), and
- every other attempt created since the program's funding ledger began in that currency (its first
  funding record): payments made before it (while the program was alone on the platform account,
  or before an upgrade) were paid from the platform balance, not from funding.
Reversed money stays spent (conservative): Stripe does not give a reversal back to a charge, and
money an affiliate owes again is paid in a later batch, from the funding of that time. Failed
attempts moved no money and do not count.

Execution (pre-flight, `execution.preflight`): a program on the platform account that shares it with
another active program must have available funding covering its batch in every currency, or none
of its transfers is sent (`FundingShortfall`). At claim time (`source_choice`, inside the claim
transaction) each transfer names one of the program's charges with room for it (`source_transaction`,
best fit), so Stripe itself refuses to spend more than the charge; without a charge that fits, the
top-ups' remaining funding may pay it (no `source_transaction`); otherwise the item is held
(`insufficient_program_funds`) rather than overspend. A lone program on the platform account, or a
program on its own account, keeps the platform-balance pre-flight; it still names a charge when one
of its recorded charges has room, and otherwise pays from the balance as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.money import format_minor
from sorae_payouts.ledger.sql import as_utc, text
from sorae_payouts.registry.account_facts import describe_paying_account
from sorae_payouts.registry.paying_accounts import require_program_gateway
from sorae_payouts.registry.programs import Program, get_program
from sorae_payouts.stripe_gateway import StripeGateway

HOLD_CODE = "insufficient_program_funds"
CHARGE, TOPUP = "charge", "topup"


class FundingError(PayoutRefused):
    """The funding record is refused; the message says why."""


@dataclass(frozen=True)
class Funding:
    funding_pk: int
    program_id: str
    kind: str
    stripe_id: str
    paying_account: str
    currency: str
    amount_minor: int
    recorded_by: str
    recorded_at: datetime
    note: str | None

    def as_json(self) -> dict:
        return {
            "funding_pk": self.funding_pk,
            "program_id": self.program_id,
            "kind": self.kind,
            "stripe_id": self.stripe_id,
            "paying_account": self.paying_account,
            "currency": self.currency,
            "amount_minor": self.amount_minor,
            "amount": format_minor(self.amount_minor, self.currency),
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at.isoformat(),
            "note": self.note,
        }


@dataclass(frozen=True)
class FundingRecorded:
    funding: Funding
    created: bool  # False: the same program had already recorded this charge or top-up (nothing written)

    def __str__(self) -> str:
        f = self.funding
        return f"{f.kind} {f.stripe_id}: {format_minor(f.amount_minor, f.currency)} on {f.paying_account}" + (
            "" if self.created else f" (already recorded by {f.recorded_by}; nothing changed)"
        )


_COLUMNS = (
    "funding_pk, program_id, kind, stripe_id, paying_account, currency, amount_minor, recorded_by, recorded_at, note"
)


def _funding(row) -> Funding:
    return Funding(int(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]), row[7], as_utc(row[8]), row[9])


def find_funding(conn: sa.Connection, stripe_id: str) -> Funding | None:
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM program_funding WHERE stripe_id = :s"), {"s": stripe_id}).first()
    return _funding(row) if row else None


def list_funding(conn: sa.Connection, program_id: str) -> list[Funding]:
    return [
        _funding(r)
        for r in conn.execute(
            text(f"SELECT {_COLUMNS} FROM program_funding WHERE program_id = :p ORDER BY recorded_at, funding_pk"),
            {"p": program_id},
        )
    ]


def record_funding(
    engine: sa.Engine,
    gateway: StripeGateway,
    program_id: str,
    *,
    charge_id: str | None = None,
    topup_id: str | None = None,
    recorded_by: str,
    now: datetime,
    note: str | None = None,
) -> FundingRecorded:
    """Record that a Stripe charge or top-up funds `program_id`, as Stripe knows it (read through the
    program's own gateway). Recording it again for the same program changes nothing; for another
    program it is refused."""
    if (charge_id is None) == (topup_id is None):
        raise FundingError("name exactly one Stripe object: a charge (ch_...) or a top-up (tu_...)")
    kind, stripe_id = (CHARGE, charge_id) if charge_id is not None else (TOPUP, topup_id)
    stripe_id = (stripe_id or "").strip()
    if not stripe_id or len(stripe_id) > 64:
        raise FundingError(f"a {kind} id is 1-64 characters")
    if not recorded_by or not recorded_by.strip():
        raise FundingError("a funding record needs the name of who records it")
    with engine.connect() as conn:
        program = get_program(conn, program_id)
        existing = _already(conn, program_id, kind, stripe_id)
    if existing is not None:
        return FundingRecorded(existing, created=False)
    require_program_gateway(program, gateway)
    amount, currency = _from_stripe(gateway, program, kind, stripe_id)
    paying_account = gateway.paying_account()
    try:
        with engine.begin() as conn:
            row = conn.execute(
                text(
                    "INSERT INTO program_funding (program_id, kind, stripe_id, paying_account, currency, amount_minor, "
                    "recorded_by, recorded_at, note) VALUES (:p, :k, :s, :a, :c, :m, :by, :now, :note) "
                    f"RETURNING {_COLUMNS}"
                ),
                {
                    "p": program_id,
                    "k": kind,
                    "s": stripe_id,
                    "a": paying_account,
                    "c": currency,
                    "m": amount,
                    "by": recorded_by.strip(),
                    "now": now,
                    "note": note,
                },
            ).one()
    except sa.exc.IntegrityError:  # recorded meanwhile by another process: same answer as above
        with engine.connect() as conn:
            existing = _already(conn, program_id, kind, stripe_id)
        if existing is None:
            raise
        return FundingRecorded(existing, created=False)
    return FundingRecorded(_funding(row), created=True)


def _already(conn: sa.Connection, program_id: str, kind: str, stripe_id: str) -> Funding | None:
    """The existing record of this id for this program, or None; refuses one of another program."""
    existing = find_funding(conn, stripe_id)
    if existing is None:
        return None
    if existing.program_id != program_id or existing.kind != kind:
        raise FundingError(
            f"{existing.kind} {stripe_id} already funds program {existing.program_id} "
            f"({format_minor(existing.amount_minor, existing.currency)}, recorded by "
            f"{existing.recorded_by} at {existing.recorded_at.isoformat()}): one charge or top-up "
            "funds one program, once"
        )
    return existing


def _from_stripe(gateway: StripeGateway, program: Program, kind: str, stripe_id: str) -> tuple[int, str]:
    """(amount, currency) of a succeeded charge or top-up on the program's paying account. A charge
    counts net of what was refunded of it (conservative: Stripe's own limit is the gross amount)."""
    where = f"the paying account of program {program.program_id} ({describe_paying_account(program)})"
    if kind == CHARGE:
        charge = gateway.charge(stripe_id)
        if charge is None:
            raise FundingError(f"charge {stripe_id} does not exist on {where}")
        if charge.status != "succeeded" or not charge.paid or not charge.captured:
            raise FundingError(
                f"charge {stripe_id} is {charge.status}"
                f"{'' if charge.paid else ', not paid'}{'' if charge.captured else ', not captured'}: "
                "only a succeeded, captured charge funds a program"
            )
        amount, currency = charge.amount_minor - charge.amount_refunded, charge.currency
    else:
        topup = gateway.topup(stripe_id)
        if topup is None:
            raise FundingError(f"top-up {stripe_id} does not exist on {where}")
        if topup.status != "succeeded":
            raise FundingError(
                f"top-up {stripe_id} is {topup.status}, not succeeded: only money that arrived funds a program"
            )
        amount, currency = topup.amount_minor, topup.currency
    if amount <= 0:
        raise FundingError(f"{kind} {stripe_id} leaves nothing to fund a program with (refunded)")
    return amount, currency


def shares_platform_account(
    conn: sa.Connection, program: Program, *, program_account: str, platform_account: str | None
) -> bool:
    """True when the program pays from the platform account (its key's account IS the platform's, whatever
    its reference says) and the platform balance may hold other programs' money: another active program
    pays from it, or another program (active or not) has funding recorded on it. Then it may spend only
    its own funding. Disabling the others does not make their recorded money the program's."""
    if platform_account is None or program_account != platform_account:
        return False
    others = conn.execute(
        text(
            "SELECT COUNT(*) FROM program o WHERE o.program_id <> :p AND ("
            "(o.status = 'active' AND (o.paying_account_ref IS NULL OR o.paying_account_id = :acct)) "
            "OR EXISTS (SELECT 1 FROM program_funding f "
            "WHERE f.program_id = o.program_id AND f.paying_account = :acct))"
        ),
        {"p": program.program_id, "acct": platform_account},
    ).scalar_one()
    return others > 0


_FUNDED = "SELECT currency, SUM(amount_minor) FROM program_funding WHERE program_id = :p {where} GROUP BY currency"
# Through the program's batches (indexed): its attempts that took money, see the module docstring.
_SPENT = """
SELECT a.currency, SUM(a.amount_minor) FROM payout_batch b
JOIN payout_item i ON i.batch_id = b.batch_id
JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id
WHERE b.program_id = :p AND a.state IN ('processing', 'posted') {currency} {which}
GROUP BY a.currency
"""
_SINCE_FUNDING_BEGAN = (
    "a.created_at >= (SELECT MIN(f.recorded_at) FROM program_funding f "
    "WHERE f.program_id = :p AND f.currency = a.currency)"
)


def available_funding(conn: sa.Connection, program_id: str, *, paying_account: str | None = None) -> dict[str, int]:
    """Funding left per currency (funded - spent; negative when more was spent than funded, e.g. by
    payments made while the program was alone on the account). `paying_account`: count only the
    funding recorded on that Stripe account (what a transfer from it can draw on)."""
    account = "AND paying_account = :acct" if paying_account else ""
    funded = {
        c: int(m)
        for c, m in conn.execute(text(_FUNDED.format(where=account)), {"p": program_id, "acct": paying_account})
    }
    spent = _spent(conn, program_id, None, f"AND (a.source_transaction IS NOT NULL OR {_SINCE_FUNDING_BEGAN})")
    return {c: funded.get(c, 0) - spent.get(c, 0) for c in sorted(set(funded) | set(spent))}


def _spent(conn: sa.Connection, program_id: str, currency: str | None, which: str) -> dict[str, int]:
    sql = _SPENT.format(currency="AND a.currency = :c" if currency else "", which=which)
    return {c: int(m) for c, m in conn.execute(text(sql), {"p": program_id, "c": currency})}


def funding_shortfalls(
    conn: sa.Connection, program_id: str, needed: dict[str, int], *, paying_account: str | None = None
) -> dict[str, tuple[int, int]]:
    """currency -> (needed, available) for every currency the program's available funding does not cover."""
    available = available_funding(conn, program_id, paying_account=paying_account)
    return {c: (n, available.get(c, 0)) for c, n in sorted(needed.items()) if available.get(c, 0) < n}


_CHARGE_ROOM = """
SELECT f.stripe_id, f.amount_minor - COALESCE((SELECT SUM(a.amount_minor) FROM transfer_attempt a
       WHERE a.source_transaction = f.stripe_id AND a.state IN ('processing', 'posted')), 0) AS room
FROM program_funding f
WHERE f.program_id = :p AND f.kind = 'charge' AND f.currency = :c AND f.paying_account = :acct
ORDER BY f.funding_pk
"""


def source_choice(
    conn: sa.Connection, *, program_id: str, paying_account: str, currency: str, amount_minor: int, strict: bool
) -> tuple[str | None, str | None]:
    """What pays one transfer: (charge id or None, hold reason or None). Call inside the claim's
    transaction: on PostgreSQL the program's funding rows of the currency are locked first, so
    concurrent claims see each other's attempts (the source guard trigger locks the same rows)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "SELECT funding_pk FROM program_funding WHERE program_id = :p AND currency = :c "
                "ORDER BY funding_pk FOR UPDATE"
            ),
            {"p": program_id, "c": currency},
        )
    rooms = [
        (stripe_id, int(room))
        for stripe_id, room in conn.execute(
            text(_CHARGE_ROOM), {"p": program_id, "c": currency, "acct": paying_account}
        )
    ]
    fitting = [r for r in rooms if r[1] >= amount_minor]
    if fitting:  # best fit: the charge with the least room that still covers the transfer
        return min(fitting, key=lambda r: r[1])[0], None
    if not strict:
        return None, None  # paid from the platform balance, as without funding
    topups = int(
        conn.execute(
            text(
                "SELECT COALESCE(SUM(amount_minor), 0) FROM program_funding WHERE program_id = :p AND kind = 'topup' "
                "AND currency = :c AND paying_account = :acct"
            ),
            {"p": program_id, "c": currency, "acct": paying_account},
        ).scalar_one()
    )
    spent = _spent(conn, program_id, currency, f"AND a.source_transaction IS NULL AND {_SINCE_FUNDING_BEGAN}")
    topup_room = topups - spent.get(currency, 0)
    if topup_room >= amount_minor:
        return None, None
    best = max([r for _, r in rooms] + [0])
    return None, (
        f"{HOLD_CODE}: no charge or top-up funding program {program_id} has "
        f"{format_minor(amount_minor, currency)} left for this transfer (largest charge room "
        f"{format_minor(best, currency)}, top-ups {format_minor(max(topup_room, 0), currency)}); "
        "record more funding and re-run"
    )
