"""An unpaid item is closed as carried only after Stripe confirms its money was not paid.

The manifest build closes every unpaid item of a program's earlier, settled batches into the month's
batch (`carry`). The ledger may have forgotten a payment (re-created from the files, restored from a backup
taken before `refresh` paid the item): carrying it then pays it twice. So before the build, the items it
would close are looked up at Stripe through the program's paying account (`check`, provided by the caller:
`execution.sources.check_unpaid_items` through the program's gateway), each answer is recorded
(`payout_item_stripe_check`, append-only) and the database refuses a carry without a current "not paid"
answer (revision 0016). A program with an item Stripe says was paid is refused alone, naming the item, the
transfer and what to run (`refresh` of that month adopts the payment); a build without a way to ask
Stripe refuses the programs that have something to carry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import period_key
from sorae_payouts.ledger.sql import as_date, set_text, text


@dataclass(frozen=True)
class UnpaidCandidate:
    """An unpaid item of an earlier batch that a month end is about to close as carried."""

    payout_item_id: int
    program_id: str
    period: date  # the month of its batch
    affiliate_id: str
    currency: str
    amount_minor: int
    latest_attempt_pk: int | None


@dataclass(frozen=True)
class StripeAnswer:
    paying_account: str
    found: dict[int, str | None]  # item id -> the transfer that paid its money, or None
    groups_scanned: list[str]


# (program id, candidates, the month they would be carried into) -> Stripe's answer
UnpaidCheck = Callable[[str, list[UnpaidCandidate], date], StripeAnswer]

# The same selection as the carry itself (`carry._CARRY_UNPAID`), before the new batch exists.
_CANDIDATES = """
SELECT i.payout_item_id, b.program_id, b.period, i.affiliate_id, i.currency, i.amount_minor,
       (SELECT MAX(a.attempt_pk) FROM transfer_attempt a WHERE a.payout_item_id = i.payout_item_id)
FROM payout_batch b JOIN payout_item i ON i.batch_id = b.batch_id
WHERE b.program_id IN :program_ids AND b.period < :period
  AND b.status IN ('partially_completed', 'completed_with_exceptions', 'completed')
  AND i.carry_reason IS NULL AND i.status IN ('failed', 'pending') AND i.amount_minor > 0
ORDER BY b.program_id, i.payout_item_id
"""


def unpaid_candidates(
    conn: sa.Connection, period: date, program_ids: Iterable[str]
) -> dict[str, list[UnpaidCandidate]]:
    by_program: dict[str, list[UnpaidCandidate]] = {}
    for row in conn.execute(set_text(_CANDIDATES), {"program_ids": list(program_ids), "period": period}):
        candidate = UnpaidCandidate(
            int(row[0]), row[1], as_date(row[2]), row[3], row[4], int(row[5]), None if row[6] is None else int(row[6])
        )
        by_program.setdefault(candidate.program_id, []).append(candidate)
    return by_program


def confirm_unpaid(
    engine: sa.Engine, period: date, program_ids: Iterable[str], check: UnpaidCheck | None
) -> dict[str, str]:
    """Ask Stripe about every item the build of `period` would carry, record the answers, and return the
    programs refused (program -> why). Programs with nothing to carry are not asked."""
    with engine.connect() as conn:
        candidates = unpaid_candidates(conn, period, program_ids)
    refused: dict[str, str] = {}
    for program_id, items in candidates.items():
        if check is None:
            refused[program_id] = (
                f"{len(items)} unpaid item(s) of earlier months would be carried into {period_key(period)}, and an "
                "unpaid item is carried only after Stripe confirms it was not paid: run month end with Stripe "
                "configured (STRIPE_API_KEY)"
            )
            continue
        try:
            answer = check(program_id, items, period)
        except PayoutRefused as exc:
            refused[program_id] = f"cannot ask Stripe about its unpaid items: {exc}"
            continue
        _record(engine, items, answer)
        paid = [c for c in items if answer.found.get(c.payout_item_id)]
        if paid:
            c = paid[0]
            refused[program_id] = (
                f"item {c.payout_item_id} of {period_key(c.period)} ({c.affiliate_id}, "
                f"{format_minor(c.amount_minor, c.currency)}) is unpaid in the ledger but was paid at Stripe by "
                f"{answer.found[c.payout_item_id]}"
                + (f" (and {len(paid) - 1} more)" if len(paid) > 1 else "")
                + f": run `sorae-payouts refresh {period_key(c.period)} --program {program_id}` (it adopts the "
                "payment), then this month end again; nothing was carried"
            )
    return refused


def _record(engine: sa.Engine, items: list[UnpaidCandidate], answer: StripeAnswer) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO payout_item_stripe_check (program_id, payout_item_id, latest_attempt_pk, paying_account, "
                "groups_scanned, found_transfer_id, checked_at) VALUES (:p, :i, :a, :acct, :g, :f, :now)"
            ),
            [
                {
                    "p": c.program_id,
                    "i": c.payout_item_id,
                    "a": c.latest_attempt_pk,
                    "acct": answer.paying_account,
                    "g": json.dumps(answer.groups_scanned),
                    "f": answer.found.get(c.payout_item_id),
                    "now": now,
                }
                for c in items
            ],
        )
