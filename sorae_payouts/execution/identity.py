"""The business identity of a transfer: its idempotency key, transfer group and metadata.

Everything here is derived from what any ledger rebuilt from the same input files derives identically:
the paying Stripe account (the platform account behind the API key), the program, the period, the
affiliate, the currency and the attempt number. Never from a random ledger id or an autoincrement, so a
re-created, restored or second ledger sends the same key for the same payment (Stripe replays it or
refuses changed parameters) and finds the first ledger's transfers by metadata.

One function each owns the key (`idempotency_key`), the group (`transfer_group`) and the metadata
(`transfer_metadata`); `transfer_identity` reads the identity back from a transfer Stripe returns,
including transfers sent by ledgers of the previous key format (`sorae-<ledger>-item-<id>-attempt-<n>`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date

from sorae_payouts.core.periods import period_key
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

KEY_PREFIX = "sorae:v2"
LEGACY_KEY_PREFIX = "sorae-"
MAX_KEY_LENGTH = 255
_NUMBER_ROOM = 6
# Characters kept as they are in a key part; anything else (':' included) is replaced by a hash, and a
# hashed part starts with '~', which no kept part can contain: two different ids never share a key.
_PLAIN_PART = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")


@dataclass(frozen=True)
class PaymentIdentity:
    """What one payment is, independent of any ledger's row ids."""

    program_id: str
    period: str  # "YYYY-MM"
    affiliate_id: str
    currency: str


def _part(value: str) -> str:
    if _PLAIN_PART.fullmatch(value):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def key_basis(paying_account: str, identity: PaymentIdentity) -> dict[str, str]:
    """What the key is derived from besides the attempt number (stored on the attempt, whose
    `attempt_number` column completes it, so an operator can re-derive the key)."""
    return {
        "paying_account": paying_account,
        "program_id": identity.program_id,
        "period": identity.period,
        "affiliate_id": identity.affiliate_id,
        "currency": identity.currency,
    }


def idempotency_key(paying_account: str, identity: PaymentIdentity, attempt_number: int) -> str:
    """`sorae:v2:<paying acct>:<program>:<YYYY-MM>:<affiliate>:<currency>:attempt-<n>` (<= 255 chars).

    Odd characters in an id are hashed (see `_PLAIN_PART`); a key that would still be too long keeps
    its readable head and hashes the rest."""
    if attempt_number < 1:
        raise ValueError("attempt numbers start at 1")
    tail = f"{_part(identity.program_id)}:{identity.period}:{_part(identity.affiliate_id)}:{identity.currency}"
    head = f"{KEY_PREFIX}:{_part(paying_account)}:{tail}:attempt-"
    # The form is chosen without the number (room kept for 6 digits), so every attempt of a payment has
    # the same prefix (see `idempotency_key_prefix`).
    if len(head) + _NUMBER_ROOM > MAX_KEY_LENGTH:
        digest = hashlib.sha256(tail.encode("utf-8")).hexdigest()
        head = f"{KEY_PREFIX}:{_part(paying_account)}:~{digest}:attempt-"
    return f"{head}{attempt_number}"


def reversal_idempotency_key(paying_account: str, identity: PaymentIdentity, transfer_id: str, sequence: int) -> str:
    """Key of a reversal the engine requests (negative-balance recovery), from business identity like
    transfer keys: `sorae:v2:<paying acct>:reversal:<program>:<YYYY-MM>:<affiliate>:<currency>:<tr>:<n>`."""
    key = (
        f"{KEY_PREFIX}:{_part(paying_account)}:reversal:{_part(identity.program_id)}:{identity.period}:"
        f"{_part(identity.affiliate_id)}:{identity.currency}:{_part(transfer_id)}:{sequence}"
    )
    if len(key) > MAX_KEY_LENGTH:
        key = f"{KEY_PREFIX}:{_part(paying_account)}:reversal:~{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def key_basis_json(paying_account: str, identity: PaymentIdentity) -> str:
    return json.dumps(key_basis(paying_account, identity), sort_keys=True)


def idempotency_key_prefix(paying_account: str, identity: PaymentIdentity) -> str:
    """The key without its attempt number: both key forms end with `attempt-<n>`, so the database can
    append the number it computes in the same statement that stores the attempt."""
    return idempotency_key(paying_account, identity, 1)[:-1]


def is_legacy_key(key: str) -> bool:
    """Keys stored by ledgers before revision 0005 (they embed a random ledger id)."""
    return key.startswith(LEGACY_KEY_PREFIX)


def transfer_group(period: date, program_id: str = DEFAULT_PROGRAM) -> str:
    """The Stripe `transfer_group` of a program's batch: `payout_YYYY-MM` for the default program
    (the batch id, as every transfer sent so far carries it), `payout_<program>_YYYY-MM` otherwise."""
    if program_id == DEFAULT_PROGRAM:
        return f"payout_{period_key(period)}"
    return f"payout_{_part(program_id)}_{period_key(period)}"


def transfer_metadata(
    identity: PaymentIdentity, attempt_number: int, payout_item_id: int, sources: dict[str, str] | None = None
) -> dict[str, str]:
    """Metadata of a new transfer. Matching uses program, period, affiliate and currency; the payout
    item id is only information for people (another ledger numbers its items differently). `sources`: what
    it pays besides its month (`sources.Sources.metadata`: `carried_from`, `owed_again_of`)."""
    return {
        **(sources or {}),
        "program_id": identity.program_id,
        "period": identity.period,
        "affiliate_id": identity.affiliate_id,
        "currency": identity.currency,
        "attempt_number": str(attempt_number),
        "payout_item_id": str(payout_item_id),
    }


def legacy_transfer_metadata(
    key: str, identity: PaymentIdentity, attempt_number: int, payout_item_id: int, batch_id: str
) -> dict[str, str]:
    """Metadata of an attempt claimed before revision 0005, exactly as that code sent it: a re-sent old
    key must carry its first parameters, or Stripe refuses it."""
    ledger_id = key.removeprefix(LEGACY_KEY_PREFIX).split("-item-")[0]
    return {
        "sorae_ledger_id": ledger_id,
        "payout_item_id": str(payout_item_id),
        "attempt_number": str(attempt_number),
        "period": identity.period,
        "batch_id": batch_id,
        "affiliate_id": identity.affiliate_id,
    }


def transfer_identity(metadata: dict[str, str], currency: str) -> PaymentIdentity | None:
    """The payment a transfer in Stripe is for, read from its metadata; None when it carries none of
    ours. Transfers of the previous format have no program or currency metadata: default program and
    the transfer's own currency."""
    period, affiliate = metadata.get("period"), metadata.get("affiliate_id")
    if not period or not affiliate:
        return None
    return PaymentIdentity(
        metadata.get("program_id") or DEFAULT_PROGRAM, period, affiliate, (metadata.get("currency") or currency).lower()
    )
