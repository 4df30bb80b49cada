"""Money once owed elsewhere: what a transfer pays besides its own month, and Stripe asked before it moves.

Two kinds of money are owed in one place of the ledger but were owed somewhere else before:
- carried money: an unpaid item of an earlier month closed into a later month's item (`month_end/carry`);
- owed-again money: an amount reversed at Stripe that an operator decided is owed again, carried into a
  later batch (`aftercare/reversals`, `month_end/manifest_build`).
A ledger can forget that such money was paid already (re-created from the same files, a backup restored
from before the payment): the first transfer's protections (keys and groups from business identity) do not
help, because the later payment has another identity (another month). Stripe does not forget. So:

- every transfer names its sources in its metadata (`carried_from`: the months whose unpaid money it pays;
  `owed_again_of`: the reversed transfers whose money it pays again), stored with the claim (`Sources`, on
  the attempt) so a re-sent attempt carries the very same metadata;
- before such money is paid, Stripe is consulted (`StripePayments.already_paid`): the transfer groups of the
  months between the source and the paying month are listed (once per group per run) and a transfer that
  paid the same money — the source month's own transfer, or another month's transfer naming the same source
  — blocks the item for an operator (`execution/pay_batch`); nothing is sent;
- before a month end closes an unpaid item as carried, the same question is asked
  (`check_unpaid_items`, recorded in `payout_item_stripe_check`; the database refuses the carry otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from sorae_payouts.core.periods import next_period, parse_period, period_key
from sorae_payouts.execution.identity import transfer_group
from sorae_payouts.ledger.sql import text
from sorae_payouts.month_end.carry_check import StripeAnswer, UnpaidCandidate
from sorae_payouts.registry.programs import DEFAULT_PROGRAM
from sorae_payouts.stripe_gateway import StripeGateway, TransferRecord

SOURCE_SEPARATOR = ","


@dataclass(frozen=True)
class Sources:
    """What an item's transfer pays besides its own month (see the module docstring)."""

    carried_from: tuple[str, ...] = ()  # "YYYY-MM" months whose unpaid items the item carries
    owed_again_of: tuple[tuple[str, str], ...] = ()  # (reversed transfer id, its "YYYY-MM")

    def __bool__(self) -> bool:
        return bool(self.carried_from or self.owed_again_of)

    def metadata(self) -> dict[str, str]:
        """The transfer's metadata keys naming the sources (Stripe keeps up to 500 characters a value)."""
        meta = {}
        if self.carried_from:
            meta["carried_from"] = SOURCE_SEPARATOR.join(self.carried_from)[:500]
        if self.owed_again_of:
            meta["owed_again_of"] = SOURCE_SEPARATOR.join(t for t, _ in self.owed_again_of)[:500]
        return meta

    def to_json(self) -> str | None:
        return (
            json.dumps({"carried_from": list(self.carried_from), "owed_again_of": self.owed_again_of}) if self else None
        )

    @classmethod
    def from_json(cls, raw: str | None) -> Sources:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(tuple(data.get("carried_from", ())), tuple(tuple(p) for p in data.get("owed_again_of", ())))


_CARRIED = """
SELECT c.affiliate_id, c.currency, fb.period FROM payout_item_carry c
JOIN payout_batch fb ON fb.batch_id = c.from_batch_id
WHERE c.into_batch_id = :b ORDER BY fb.period
"""
_OWED_AGAIN = """
SELECT o.affiliate_id, o.currency, a.stripe_transfer_id, rb.period FROM owed_again_carry o
JOIN reversal_decision d ON d.decision_pk = o.decision_pk
JOIN payout_item ri ON ri.payout_item_id = d.payout_item_id
JOIN payout_batch rb ON rb.batch_id = ri.batch_id
JOIN transfer_attempt a ON a.payout_item_id = ri.payout_item_id AND a.state = 'posted'
WHERE o.batch_id = :b ORDER BY a.stripe_transfer_id
"""


def batch_sources(conn: sa.Connection, batch_id: str) -> dict[tuple[str, str], Sources]:
    """(affiliate, currency) -> the sources of that item of the batch (frozen once the batch is approved)."""
    carried: dict[tuple[str, str], list[str]] = {}
    for affiliate, currency, period in conn.execute(text(_CARRIED), {"b": batch_id}):
        months = carried.setdefault((affiliate, currency), [])
        if period_key(parse_period(str(period))) not in months:
            months.append(period_key(parse_period(str(period))))
    owed: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for affiliate, currency, transfer_id, period in conn.execute(text(_OWED_AGAIN), {"b": batch_id}):
        owed.setdefault((affiliate, currency), []).append((transfer_id, period_key(parse_period(str(period)))))
    return {
        key: Sources(tuple(carried.get(key, ())), tuple(owed.get(key, ()))) for key in sorted(set(carried) | set(owed))
    }


def _listed(meta: dict, key: str) -> set[str]:
    return {v for v in (meta.get(key) or "").split(SOURCE_SEPARATOR) if v}


class StripePayments:
    """A program's transfers at Stripe by month (its transfer groups), each group listed once (cached)."""

    def __init__(self, gateway: StripeGateway, program_id: str):
        self.gateway, self.program_id = gateway, program_id
        self._groups: dict[str, list[TransferRecord]] = {}

    @property
    def groups_scanned(self) -> list[str]:
        return sorted(self._groups)

    def _month(self, month: str) -> list[TransferRecord]:
        group = transfer_group(parse_period(month), self.program_id)
        if group not in self._groups:
            self._groups[group] = list(self.gateway.transfers(group))
        return self._groups[group]

    def _of(self, transfer: TransferRecord, affiliate_id: str, currency: str) -> bool:
        meta = transfer.metadata
        return (
            meta.get("program_id", DEFAULT_PROGRAM) == self.program_id
            and meta.get("affiliate_id") == affiliate_id
            and meta.get("currency", transfer.currency) == currency
        )

    def _months(self, first: str, before: str) -> Iterable[str]:
        month, end = parse_period(first), parse_period(before)
        while month < end:
            yield period_key(month)
            month = next_period(month)

    def paid_month(self, affiliate_id: str, currency: str, month: str, *, before: str) -> TransferRecord | None:
        """The transfer that paid `month`'s money of this affiliate: that month's own transfer, or a later
        month's (before `before`) that names `month` in `carried_from`."""
        for candidate in self._months(month, before):
            for transfer in self._month(candidate):
                if not self._of(transfer, affiliate_id, currency):
                    continue
                own = candidate == month and transfer.metadata.get("period") == month
                if own or month in _listed(transfer.metadata, "carried_from"):
                    return transfer
        return None

    def carried_later(self, affiliate_id: str, currency: str, month: str, *, through: str) -> TransferRecord | None:
        """A transfer of a month after `month`, up to `through`, that paid `month`'s money of this affiliate as
        carried money (it names `month` in `carried_from`): another ledger, or this one before it was restored
        or re-created, carried the month's unpaid item forward and paid it there."""
        first = period_key(next_period(parse_period(month)))
        for candidate in self._months(first, period_key(next_period(parse_period(through)))):
            for transfer in self._month(candidate):
                if self._of(transfer, affiliate_id, currency) and month in _listed(transfer.metadata, "carried_from"):
                    return transfer
        return None

    def paid_again(
        self, affiliate_id: str, currency: str, reversed_transfer: str, *, after: str, before: str
    ) -> TransferRecord | None:
        """A transfer of a month after `after` and before `before` that already paid the money reversed
        from `reversed_transfer` again (it names it in `owed_again_of`)."""
        first = period_key(next_period(parse_period(after)))
        for candidate in self._months(first, before):
            for transfer in self._month(candidate):
                if self._of(transfer, affiliate_id, currency) and reversed_transfer in _listed(
                    transfer.metadata, "owed_again_of"
                ):
                    return transfer
        return None

    def already_paid(
        self, affiliate_id: str, currency: str, sources: Sources, *, period: str, through: str
    ) -> str | None:
        """Why the item of `period` must not be paid (a transfer found paying its money), or None: its own
        month's money paid by a later month's carry (up to `through`, the current month), or one of its
        sources paid already."""
        later = self.carried_later(affiliate_id, currency, period, through=through)
        if later is not None:
            return (
                f"carried_money_already_paid: this item's {period} money was carried forward and paid at Stripe by "
                f"{later.transfer_id} ({later.metadata.get('period', '?')}); nothing sent, an operator decides"
            )
        for month in sources.carried_from:
            found = self.paid_month(affiliate_id, currency, month, before=period)
            if found is not None:
                return (
                    f"carried_money_already_paid: the {month} money this item carries was paid at Stripe by "
                    f"{found.transfer_id} ({found.metadata.get('period', '?')}); nothing sent, an operator decides"
                )
        for transfer_id, month in sources.owed_again_of:
            found = self.paid_again(affiliate_id, currency, transfer_id, after=month, before=period)
            if found is not None:
                return (
                    f"owed_again_already_paid: the money reversed from {transfer_id} was paid again by "
                    f"{found.transfer_id} ({found.metadata.get('period', '?')}); nothing sent, an operator decides"
                )
        return None


def check_unpaid_items(gateway: StripeGateway, program_id: str, candidates: list[UnpaidCandidate], into: date):
    """The month end's question (`month_end.carry_check.UnpaidCheck`), asked through the program's gateway:
    for each candidate, the transfer that paid its money (its month's own, or a later month's before `into`
    naming it as a source), or None."""
    payments = StripePayments(gateway, program_id)
    found = {}
    for c in candidates:
        transfer = payments.paid_month(c.affiliate_id, c.currency, period_key(c.period), before=period_key(into))
        found[c.payout_item_id] = transfer.transfer_id if transfer is not None else None
    return StripeAnswer(gateway.paying_account(), found, payments.groups_scanned)
