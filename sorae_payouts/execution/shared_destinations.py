"""One connected account, one affiliate: items paid into an account another affiliate also uses are held.

Two affiliates of one program with the same `stripe_account_id` is most often a copy-paste error in the affiliate
platform or someone redirecting another affiliate's money, and Stripe cannot tell: it pays whatever
account it is given. So at pre-flight, a pending item whose destination is also the account of another
affiliate (in the affiliates table, or as the destination of another item of the same batch that may
still be paid, i.e. not carried forward or blocked) is held
with `shared_destination: also used by <affiliate ids>`, unless its affiliate is marked
`allow_shared_destination` (affiliates file). The hold is an ordinary hold: the item stays pending,
the operator sees the reason in `batch show`, the affiliate a plain sentence in the history, and the
next run pays it once the affiliates file says who owns the account.
Across programs an account may recur: one person may be an affiliate of several programs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa

from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.ledger.sql import text

HOLD_CODE = "shared_destination"
MAX_NAMED = 5  # affiliate ids named in one reason, then "and N more"
_PROGRAM = "(SELECT b.program_id FROM payout_batch b WHERE b.batch_id = :b)"


def shared_destination_holds(conn: sa.Connection, batch_id: str, items: Iterable) -> dict[int, str]:
    """Hold reasons (payout_item_id -> reason) for the pending `items` whose destination is shared."""
    pending = [i for i in items if i.status == ItemStatus.PENDING and i.destination]
    if not pending:
        return {}
    users: dict[str, set[str]] = defaultdict(set)
    for account, affiliate in conn.execute(
        text(
            f"SELECT a.stripe_account_id, a.affiliate_id FROM affiliate a WHERE a.program_id = {_PROGRAM} "
            "AND a.stripe_account_id IN (SELECT i.stripe_account_id FROM payout_item i WHERE i.batch_id = :b) "
            "UNION SELECT i.stripe_account_id, i.affiliate_id FROM payout_item i WHERE i.batch_id = :b "
            "AND i.stripe_account_id IS NOT NULL AND i.status NOT IN ('carried_forward', 'blocked')"
        ),
        {"b": batch_id},
    ):
        users[account].add(affiliate)
    allowed = {
        row[0]
        for row in conn.execute(
            text(
                f"SELECT affiliate_id FROM affiliate WHERE program_id = {_PROGRAM} AND allow_shared_destination = :yes "
                "AND affiliate_id IN (SELECT affiliate_id FROM payout_item WHERE batch_id = :b)"
            ),
            {"b": batch_id, "yes": True},
        )
    }
    holds = {}
    for item in pending:
        others = sorted(users.get(item.destination, set()) - {item.affiliate_id})
        if others and item.affiliate_id not in allowed:
            holds[item.payout_item_id] = shared_reason(item.destination, others)
    return holds


def shared_reason(account: str, others: list[str]) -> str:
    named = ", ".join(others[:MAX_NAMED]) + (f" and {len(others) - MAX_NAMED} more" if len(others) > MAX_NAMED else "")
    return (
        f"{HOLD_CODE}: also used by {named} (connected account {account}); fix the affiliates file, or mark "
        "the affiliate allow_shared_destination=true if the account is meant to be shared"
    )
