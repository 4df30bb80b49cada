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

# Statuses an item may be built with (manifest insert).
INITIAL = ("pending", "carried_forward")

# old status -> new statuses allowed. A status not listed as a key has no exit (terminal).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("processing", "blocked", "carried_forward"),
    "processing": ("posted", "failed", "pending", "blocked"),
    "failed": ("pending", "carried_forward"),
    "posted": ("partially_reversed", "reversed"),
    "partially_reversed": ("reversed",),
}

STATUSES = ("pending", "processing", "posted", "failed", "carried_forward", "blocked", "partially_reversed", "reversed")

# Transitions that need an appended record in the same transaction (checked by the same trigger).
RETRY_RECORD_REQUIRED = ("failed", "pending")  # payout_item_retry for the latest attempt
CARRY_RECORD_REQUIRED = ("carried_forward",)  # payout_item_carry (from pending or failed)

# Payable items that no run will send any more without a person or a fix: the batch is not `completed`.
EXCEPTIONS = ("failed", "blocked", "partially_reversed", "reversed", "carried_forward")


def allowed(old: str, new: str) -> bool:
    return old == new or new in TRANSITIONS.get(old, ())


def pairs(transitions: dict[str, tuple[str, ...]] = TRANSITIONS) -> list[tuple[str, str]]:
    return sorted((old, new) for old, news in transitions.items() for new in news)
