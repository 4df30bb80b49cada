"""The payout item state machine: the one place that says which status changes exist.

    built ──> pending ──claim──> processing ──> posted ──> partially_reversed ──> reversed
                 │  ^               │  │  └──> failed ──(retry record)──> pending
                 │  └─(retryable)───┘  └──> blocked           │
                 ├──> blocked                                 └──(closed at a later month-end)──> carried_forward
                 └──(closed at a later month-end)──> carried_forward
    built ──> carried_forward (below minimum, negative, zero, not onboarded)

The database enforces this table (revision 0008 generates triggers from a frozen copy of it; a test keeps
the two equal), so a status edited by hand, a buggy job or a replayed script cannot move money state
backwards: a posted item is never pending again, a failed item becomes pending only together with an
appended retry record for its latest attempt, and an unpaid item is closed as carried forward only together
with the appended carry record that names the batch it flows into.
"""

from __future__ import annotations

from enum import StrEnum


class ItemStatus(StrEnum):
    """A payout item's status, as stored (`payout_item.status`). Members are strings: they compare equal
    to the stored text and bind as it in SQL."""

    PENDING = "pending"
    PROCESSING = "processing"
    POSTED = "posted"
    FAILED = "failed"
    CARRIED_FORWARD = "carried_forward"
    BLOCKED = "blocked"
    PARTIALLY_REVERSED = "partially_reversed"
    REVERSED = "reversed"


# Not stored: what operators and affiliates see for a pending item that has a hold reason.
HELD = "held"


class AttemptState(StrEnum):
    """A transfer attempt's state (`transfer_attempt.state`): processing -> posted | failed; the terminal
    states never change (revision 0002 triggers)."""

    PROCESSING = "processing"
    POSTED = "posted"
    FAILED = "failed"


S = ItemStatus

# Statuses an item may be built with (manifest insert).
INITIAL = (S.PENDING, S.CARRIED_FORWARD)

# old status -> new statuses allowed. A status not listed as a key has no exit (terminal).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.PENDING: (S.PROCESSING, S.BLOCKED, S.CARRIED_FORWARD),
    S.PROCESSING: (S.POSTED, S.FAILED, S.PENDING, S.BLOCKED),
    S.FAILED: (S.PENDING, S.CARRIED_FORWARD),
    S.POSTED: (S.PARTIALLY_REVERSED, S.REVERSED),
    S.PARTIALLY_REVERSED: (S.REVERSED,),
}

STATUSES = tuple(ItemStatus)

# Transitions that need an appended record in the same transaction (checked by the same trigger).
RETRY_RECORD_REQUIRED = (S.FAILED, S.PENDING)  # payout_item_retry for the latest attempt
CARRY_RECORD_REQUIRED = (S.CARRIED_FORWARD,)  # payout_item_carry (from pending or failed)

# Payable items that no run will send any more without a person or a fix: the batch is not `completed`.
EXCEPTIONS = (S.FAILED, S.BLOCKED, S.PARTIALLY_REVERSED, S.REVERSED, S.CARRIED_FORWARD)

# Paid items: posted, possibly reversed since (the money left; a reversal took some or all of it back).
PAID = (S.POSTED, S.PARTIALLY_REVERSED, S.REVERSED)


def allowed(old: str, new: str) -> bool:
    return old == new or new in TRANSITIONS.get(old, ())


def pairs(transitions: dict[str, tuple[str, ...]] = TRANSITIONS) -> list[tuple[str, str]]:
    return sorted((old, new) for old, news in transitions.items() for new in news)
