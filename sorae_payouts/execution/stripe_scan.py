"""Stripe is consulted before money moves: the batch's transfer group, listed once before a run's first transfer.

The list (100 transfers per page) is matched to the batch's items by payment identity from the
transfers' metadata (program, period, affiliate, currency; `identity.transfer_identity`) and by
destination; transfers whose id the ledger already holds are skipped. For each item, a transfer the
ledger does not know:
- resolves the item's open attempt (outcome unknown: a crash, a dropped answer) when amount, currency
  and destination match: this is the lookup every resumed attempt gets before its key is re-sent;
- is adopted for a pending item when they match (posted attempt with a note, nothing sent);
- blocks the item (`blocked`, `already_paid_outside_this_ledger: <transfer id, what differs>`) when they
  do not: never a second transfer;
- is recorded as an anomaly when the item is already paid or not payable.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.core.money import format_minor
from sorae_payouts.execution import attempts
from sorae_payouts.execution.anomalies import Anomaly
from sorae_payouts.execution.identity import PaymentIdentity, transfer_identity
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.ledger.sql import text
from sorae_payouts.stripe_gateway import Disposition, StripeGateway, TransferOutcome, TransferRecord


@dataclass
class ScanResult:
    list_requests: int = 0
    transfers_in_group: int = 0
    resolved: int = 0  # open attempts found paid
    adopted: int = 0
    blocked: dict[int, str] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    settled: set[int] = field(default_factory=set)  # items this run must not send


@dataclass(frozen=True)
class _Item:
    work: attempts.WorkItem
    status: str
    posted_transfer: str | None


_ITEMS = """
SELECT i.payout_item_id, i.affiliate_id, i.currency, i.amount_minor, i.stripe_account_id, i.status,
       (SELECT a.stripe_transfer_id FROM transfer_attempt a WHERE a.payout_item_id = i.payout_item_id
        AND a.state = 'posted') AS posted_transfer
FROM payout_item i WHERE i.batch_id = :b AND i.carry_reason IS NULL
"""
_KNOWN = """
SELECT a.stripe_transfer_id FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id
WHERE i.batch_id = :b AND a.stripe_transfer_id IS NOT NULL
"""


def describe(transfer: TransferRecord) -> str:
    return (
        f"{transfer.transfer_id} ({format_minor(transfer.amount_minor, transfer.currency)} to {transfer.destination})"
    )


def differences(transfer: TransferRecord, amount: int, currency: str, destination: str) -> list[str]:
    diffs = []
    if transfer.currency != currency or transfer.amount_minor != amount:
        diffs.append(
            f"amount {format_minor(transfer.amount_minor, transfer.currency)} != {format_minor(amount, currency)}"
        )
    if transfer.destination != destination:
        diffs.append(f"destination {transfer.destination} != {destination}")
    return diffs


def blocked_reason(transfer: TransferRecord, diffs: list[str]) -> str:
    return f"already_paid_outside_this_ledger: {transfer.transfer_id}, {'; '.join(diffs)}"


def scan_transfer_group(
    engine: sa.Engine,
    gateway: StripeGateway,
    *,
    batch_id: str,
    group: str,
    program_id: str,
    period_label: str,
    paying_account: str,
    now: datetime,
) -> ScanResult:
    result = ScanResult()
    # Stripe first, the ledger second: a transfer listed was claimed (committed) before it was sent, so
    # a concurrent run's transfer is seen here with its item already `processing`, never `pending`.
    before = gateway.request_counts["transfers.list"]
    transfers = list(gateway.transfers(group))
    result.list_requests = gateway.request_counts["transfers.list"] - before
    result.transfers_in_group = len(transfers)
    with engine.connect() as conn:
        items = {}
        for r in conn.execute(text(_ITEMS), {"b": batch_id}):
            work = attempts.WorkItem(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5])
            items[(r[1], r[2])] = _Item(work, r[5], r[6])
        known = {r[0] for r in conn.execute(text(_KNOWN), {"b": batch_id})}
    for item in items.values():
        if item.posted_transfer and item.status in (ItemStatus.PENDING, ItemStatus.PROCESSING):
            result.settled.add(item.work.payout_item_id)
            result.anomalies.append(
                Anomaly(
                    "posted_item_not_pending",
                    f"status is {item.status} but transfer {item.posted_transfer} is posted "
                    "for it: it is never claimed again",
                    item.work.payout_item_id,
                    None,
                    item.posted_transfer,
                )
            )
    unknown: dict[tuple[str, str], list[TransferRecord]] = defaultdict(list)
    by_destination = {i.work.destination: i for i in items.values() if i.work.destination}
    for transfer in transfers:
        if transfer.transfer_id in known:
            continue
        identity = transfer_identity(transfer.metadata, transfer.currency)
        if (
            identity is not None
            and (identity.program_id, identity.period) == (program_id, period_label)
            and (identity.affiliate_id, identity.currency) in items
        ):
            unknown[(identity.affiliate_id, identity.currency)].append(transfer)
        elif identity is None and transfer.destination in by_destination:
            # No payout metadata but paid to one of our destinations in our group: a person paid by hand.
            item = by_destination[transfer.destination]
            unknown[(item.work.affiliate_id, item.work.currency)].append(transfer)
        else:
            result.anomalies.append(
                Anomaly(
                    "unmatched_transfer_in_group",
                    f"transfer {describe(transfer)} in group {group} matches no item of {batch_id}",
                    None,
                    None,
                    transfer.transfer_id,
                )
            )
    for key, found in unknown.items():
        _settle_item(
            engine,
            items[key],
            found,
            result,
            paying_account=paying_account,
            identity=PaymentIdentity(program_id, period_label, key[0], key[1]),
            now=now,
        )
    return result


def _settle_item(
    engine,
    item: _Item,
    found: list[TransferRecord],
    result: ScanResult,
    *,
    paying_account: str,
    identity: PaymentIdentity,
    now: datetime,
) -> None:
    work = item.work
    item_id = work.payout_item_id
    if item.status == ItemStatus.BLOCKED and not item.posted_transfer:
        return  # already parked for an operator, with its anomaly recorded when it was blocked
    if item.posted_transfer or item.status not in (ItemStatus.PENDING, ItemStatus.PROCESSING):
        kind = "second_transfer_for_item" if item.posted_transfer else "transfer_for_unpayable_item"
        for t in found:
            result.anomalies.append(
                Anomaly(
                    kind,
                    f"transfer {describe(t)} in Stripe; the item is {item.status}"
                    + (f" with transfer {item.posted_transfer}" if item.posted_transfer else ""),
                    item_id,
                    None,
                    t.transfer_id,
                )
            )
        return
    result.settled.add(item_id)
    with engine.connect() as conn:
        attempt = attempts.open_attempt(conn, item_id) if item.status == ItemStatus.PROCESSING else None
    matching = [
        t
        for t in found
        if not differences(t, work.amount_minor, work.currency, work.destination) and t.metadata.get("period")
    ]
    if attempt is not None:
        # Our own lost answer first: same attempt number.
        matching.sort(key=lambda t: t.metadata.get("attempt_number") != str(attempt.attempt_number))
    for extra in matching[1:] if matching else []:
        result.anomalies.append(
            Anomaly(
                "second_transfer_for_item",
                f"transfer {describe(extra)} also pays this item",
                item_id,
                None,
                extra.transfer_id,
            )
        )
    if matching:
        chosen = matching[0]
        if attempt is not None and chosen.metadata.get("attempt_number") == str(attempt.attempt_number):
            attempts.record(engine, attempt, TransferOutcome(Disposition.POSTED, chosen), now=now)
            result.resolved += 1
            return
        note = (
            f"adopted from Stripe: transfer {chosen.transfer_id} was in group {chosen.transfer_group} before "
            "this run and not in this ledger (rebuilt or restored ledger, or another deployment); nothing sent"
        )
        if attempt is not None:
            attempts.record(engine, attempt, TransferOutcome(Disposition.POSTED, chosen), now=now, note=note)
        elif not attempts.adopt(
            engine, work, chosen, paying_account=paying_account, identity=identity, note=note, now=now
        ):
            return
        result.adopted += 1
        result.anomalies.append(Anomaly("adopted_from_stripe", note, item_id, None, chosen.transfer_id))
        return
    first = found[0]
    diffs = differences(first, work.amount_minor, work.currency, work.destination) or ["no payout metadata"]
    reason = blocked_reason(first, diffs)
    if attempts.block(engine, item_id, reason, now=now, attempt=attempt):
        result.blocked[item_id] = reason
        result.anomalies.append(
            Anomaly(
                "already_paid_outside_this_ledger",
                reason,
                item_id,
                attempt.attempt_pk if attempt else None,
                first.transfer_id,
            )
        )


def find_transfer(
    gateway: StripeGateway, group: str, identity: PaymentIdentity, destination: str, attempt_number: int | None = None
) -> list[TransferRecord]:
    """The transfers Stripe holds for one payment (identity from metadata, to its destination), those of
    `attempt_number` first. Used after an unknown outcome or a refused key within a run."""
    found = [
        t
        for t in gateway.transfers(group, destination=destination)
        if transfer_identity(t.metadata, t.currency) == identity
    ]
    found.sort(key=lambda t: t.metadata.get("attempt_number") != str(attempt_number))
    return found


def after_refused_key(
    gateway: StripeGateway, group: str, identity: PaymentIdentity, attempt: attempts.Attempt, request_id: str | None
) -> tuple[TransferRecord | None, str, str]:
    """After `idempotency_error` (our key was first used with other parameters): the transfer to adopt
    when one pays this payment exactly, else why the item is blocked. Returns (transfer or None, anomaly
    kind, note or blocked reason)."""
    found = find_transfer(gateway, group, identity, attempt.destination, attempt.attempt_number)
    for transfer in found:
        if not differences(transfer, attempt.amount_minor, attempt.currency, attempt.destination):
            return (
                transfer,
                "adopted_from_stripe",
                (
                    f"adopted from Stripe: key {attempt.idempotency_key} was refused (idempotency_error) and transfer "
                    f"{transfer.transfer_id} pays this item; nothing new sent"
                ),
            )
    if found:
        return (
            None,
            "already_paid_outside_this_ledger",
            blocked_reason(
                found[0], differences(found[0], attempt.amount_minor, attempt.currency, attempt.destination)
            ),
        )
    return (
        None,
        "idempotency_key_reused",
        (
            f"idempotency_key_reused: Stripe refused key {attempt.idempotency_key} (first used with other parameters, "
            f"request {request_id}); no transfer for this payment found in {group}: check the Stripe dashboard "
            "before paying it by hand"
        ),
    )
