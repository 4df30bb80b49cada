"""Pre-flight: what is checked after the Stripe group scan and before the first transfer of a run.

- Items whose destination is shared with another affiliate of the program are held
  (`shared_destinations`), and so are items whose connected account cannot receive transfers (missing,
  not connected to the paying account, capability inactive, payouts disabled). Held items stay
  pending with the reason; unresolved attempts are always resumed (they may already be paid).
- Money, per currency, for the pending items about to be sent:
  - a program that shares the platform account with another active program must be covered by its
    own available funding (`funding`), else `FundingShortfall` and nothing of the program is sent
    (other programs' batches execute separately and are not affected);
  - otherwise (a lone program on the platform account, a program on its own account) the paying
    account's available balance must cover it, else nothing is sent.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.money import format_minor
from sorae_payouts.execution import attempts
from sorae_payouts.execution.shared_destinations import shared_destination_holds
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.registry.funding import funding_shortfalls
from sorae_payouts.stripe_gateway import StripeGateway
from sorae_payouts.stripe_gateway.gateway import LIST_PAGE_SIZE
from sorae_payouts.stripe_gateway.readiness import AccountReadiness


class ExecutionRefused(PayoutRefused):
    """Nothing was sent: the batch may not be executed now. The message says why."""


def disabled_program(program_id: str, what: str) -> ExecutionRefused:
    """The refusal for a disabled program (a merchant paused or leaving): it sends no new money."""
    return ExecutionRefused(
        f"program {program_id} is disabled: {what}; enable it (`sorae-payouts programs enable "
        f"{program_id}`) to pay them; nothing was sent"
    )


class FundingShortfall(ExecutionRefused):
    """A program on a shared platform account lacks the funding for its batch: none of it was sent."""

    def __init__(self, program_id: str, batch_id: str, shortfalls: dict[str, tuple[int, int]]):
        self.program_id, self.batch_id, self.shortfalls = program_id, batch_id, shortfalls
        super().__init__(
            f"program {program_id} shares the platform account and its funding does not cover batch "
            f"{batch_id} ({_detail(shortfalls)}): record the Stripe charge or top-up that funds it, "
            "then re-run; nothing was sent (other programs are not affected)"
        )


def _detail(shortfalls: dict[str, tuple[int, int]]) -> str:
    return "; ".join(
        f"{c}: need {format_minor(n, c)}, available {format_minor(a, c)}" for c, (n, a) in sorted(shortfalls.items())
    )


def hold_unready(
    engine: sa.Engine,
    gateway: StripeGateway,
    batch_id: str,
    items: list[attempts.WorkItem],
    *,
    workers: int,
    account_list_threshold: int,
) -> dict[int, str]:
    """Hold reasons of the pending items that cannot be sent now (not written: the caller holds them)."""
    with engine.connect() as conn:  # one account, one affiliate (unless allowed to share)
        shared = shared_destination_holds(conn, batch_id, items)
    pending = [i for i in items if i.status == ItemStatus.PENDING and i.payout_item_id not in shared]
    destinations = sorted({i.destination for i in pending})
    readiness = _listed_readiness(gateway, destinations) if len(destinations) > account_list_threshold else {}
    unlisted = [d for d in destinations if d not in readiness]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preflight") as pool:
        readiness.update(zip(unlisted, pool.map(gateway.account_readiness, unlisted), strict=False))
    return shared | {
        i.payout_item_id: readiness[i.destination].hold_reason or "account not ready"
        for i in pending
        if not readiness[i.destination].ready
    }


# A page of the account list is one request that cannot run in parallel with the next one (cursor);
# the GETs it replaces run `workers` at a time. Keep paging only while each page replaces this many.
MIN_DESTINATIONS_PER_PAGE = 10


def _listed_readiness(gateway: StripeGateway, destinations: list[str]) -> dict[str, AccountReadiness]:
    """The destinations' readiness read from the list of the paying account's connected accounts (100 per
    request), while that stays cheaper than one GET per destination. A platform account shared by many
    programs has far more connected accounts than one batch pays: the listing stops after a page that
    held fewer than MIN_DESTINATIONS_PER_PAGE of the destinations, or after as many accounts as twice
    the destinations, and every destination not seen by then is asked for on its own, in parallel.
    (Every page is a request against the account's rate limit: listing 20,000 accounts for a batch of
    200 destinations spent 200 sequential requests to save 200 parallel ones.)"""
    wanted = set(destinations)
    found: dict[str, AccountReadiness] = {}
    budget, in_page = 2 * len(destinations), 0
    for read, account in enumerate(gateway.all_account_readiness(), start=1):
        if account.account_id in wanted:
            found[account.account_id] = account
            in_page += 1
        if len(found) == len(wanted) or read >= budget:
            break  # the iterator fetches pages lazily: no page beyond this one is requested
        if read % LIST_PAGE_SIZE == 0:
            if in_page < MIN_DESTINATIONS_PER_PAGE:
                break
            in_page = 0
    return found


def require_money(
    engine: sa.Engine,
    gateway: StripeGateway,
    *,
    program_id: str,
    batch_id: str,
    sendable: list[attempts.WorkItem],
    funded: bool,
) -> None:
    """Refuse the run (nothing sent) when the money for its pending items is not there."""
    needed: dict[str, int] = {}
    for item in sendable:
        if item.status == ItemStatus.PENDING:
            needed[item.currency] = needed.get(item.currency, 0) + item.amount_minor
    if not needed:
        return
    if funded:
        with engine.connect() as conn:
            short = funding_shortfalls(conn, program_id, needed, paying_account=gateway.paying_account())
        if short:
            raise FundingShortfall(program_id, batch_id, short)
        return
    available = gateway.available_balance()
    short = {c: (n, available.get(c, 0)) for c, n in needed.items() if available.get(c, 0) < n}
    if short:
        raise ExecutionRefused(
            f"platform balance too low for batch {batch_id} ({_detail(short)}); top up the "
            "Stripe balance and re-run; nothing was sent"
        )
