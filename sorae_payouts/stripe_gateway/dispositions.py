"""What a Stripe answer means for a transfer attempt: the one explicit table.

Stripe's idempotency layer stores the response of every request that started executing (errors and
500s included) and replays it for the same key; requests refused by validation or the rate limiter are
not stored. So an error can mean four different things for the payout item:

| disposition        | attempt      | item                  | why                                                  |
|--------------------|--------------|-----------------------|------------------------------------------------------|
| POSTED             | posted       | posted                | the transfer exists                                   |
| FAILED             | failed       | failed                | Stripe refused it for good; an operator must act      |
| FAILED_RETRYABLE   | failed       | pending               | refused now, stored under the key (a re-send would    |
|                    |              |                       | replay it): a later run tries again with a NEW attempt|
| RETRY_SAME_KEY     | processing   | processing            | not executed, not stored: re-send the SAME key later  |
| UNKNOWN            | processing   | processing            | may have executed: resolve by same-key re-send/lookup |
| KEY_REFUSED        | failed       | blocked (or posted)   | `idempotency_error`: the key was first used with other|
|                    |              |                       | parameters (another ledger): a lookup decides; never  |
|                    |              |                       | a new key for that payment                            |

A transfer paid from a charge (`source_transaction=ch_...`) that Stripe refuses because of that charge
(param `source_transaction`: no such charge on this account, a currency other than the charge's, or
more than what is left of the charge) is FAILED whatever the code: the same charge will never pay it,
so the funding must be fixed by a person before the item is retried.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import stripe


class Disposition(enum.Enum):
    POSTED = "posted"
    FAILED = "failed"
    FAILED_RETRYABLE = "failed_retryable"
    RETRY_SAME_KEY = "retry_same_key"
    UNKNOWN = "unknown"
    KEY_REFUSED = "key_refused"


# Stripe error codes of POST /v1/transfers -> disposition. Codes not listed fall back by HTTP status
# (see `classify`): 4xx FAILED, 429 RETRY_SAME_KEY, 5xx/network UNKNOWN.
ERROR_CODE_DISPOSITIONS: dict[str, Disposition] = {
    # The destination cannot receive this transfer: fix the account, then retry the item (operator).
    "insufficient_capabilities_for_transfer": Disposition.FAILED,
    "account_invalid": Disposition.FAILED,
    "transfers_not_allowed": Disposition.FAILED,
    "resource_missing": Disposition.FAILED,
    "amount_too_small": Disposition.FAILED,
    # Also what the sandbox answers for a transfer above what is left of its source_transaction charge.
    "amount_too_large": Disposition.FAILED,
    "parameter_invalid_integer": Disposition.FAILED,
    "parameter_missing": Disposition.FAILED,
    "parameter_unknown": Disposition.FAILED,
    # The platform balance ran short mid-batch: stored under the key, so the next run needs a new
    # attempt; the item stays payable and nothing is wrong with the affiliate.
    "balance_insufficient": Disposition.FAILED_RETRYABLE,
    # Not executed (rate limiter, lock contention, the same key still running): same key, later.
    "rate_limit": Disposition.RETRY_SAME_KEY,
    "lock_timeout": Disposition.RETRY_SAME_KEY,
    "idempotency_key_in_use": Disposition.RETRY_SAME_KEY,
    # The key was used with other parameters (a rebuilt ledger whose amounts changed): a transfer may
    # exist under it. Never a new key for that: the lookup by transfer group and metadata decides
    # between adopting that transfer and blocking the item for an operator.
    "idempotency_error": Disposition.KEY_REFUSED,
}

# FAILED codes that a fix on the affiliate's side clears (their connected account becomes able to receive
# transfers again): `refresh` re-attempts such an item by itself, with a new attempt, once pre-flight says
# the account is ready. Every other FAILED code needs a person (`sorae-payouts retry`).
CLEARED_BY_ACCOUNT_FIX: frozenset[str] = frozenset(
    {
        "account_invalid",
        "insufficient_capabilities_for_transfer",
        "transfers_not_allowed",
    }
)


@dataclass(frozen=True)
class ClassifiedError:
    disposition: Disposition
    code: str
    message: str
    request_id: str | None
    http_status: int | None
    should_retry_header: str | None


def classify(error: stripe.StripeError) -> ClassifiedError:
    """Map an SDK exception to its disposition, with the code and request id to record."""
    status = getattr(error, "http_status", None)
    headers = getattr(error, "headers", None) or {}
    # The SDK leaves `.code` empty on 409/429/5xx (APIError, RateLimitError): the code is in `.error`.
    body = getattr(error, "error", None)
    code = getattr(error, "code", None) or (getattr(body, "code", None) if body is not None else None)
    param = getattr(error, "param", None) or (getattr(body, "param", None) if body is not None else None)
    if isinstance(error, stripe.IdempotencyError) and code not in ERROR_CODE_DISPOSITIONS:
        code = code or "idempotency_error"
    if isinstance(error, stripe.APIConnectionError):
        disposition, code = Disposition.UNKNOWN, code or "api_connection_error"
    elif param == "source_transaction" and status == 400:
        # Refused because of the charge it names (see the module docstring): final for this transfer.
        disposition, code = Disposition.FAILED, code or "http_400"
    elif code in ERROR_CODE_DISPOSITIONS:
        disposition = ERROR_CODE_DISPOSITIONS[code]
    elif status == 429 or isinstance(error, stripe.RateLimitError):
        disposition, code = Disposition.RETRY_SAME_KEY, code or "rate_limit"
    elif status == 409:
        disposition, code = Disposition.RETRY_SAME_KEY, code or "conflict"
    elif status is None or status >= 500:
        disposition, code = Disposition.UNKNOWN, code or f"http_{status or 'none'}"
    else:
        disposition, code = Disposition.FAILED, code or f"http_{status}"
    return ClassifiedError(
        disposition,
        str(code),
        error.user_message or "",
        getattr(error, "request_id", None),
        status,
        headers.get("stripe-should-retry"),
    )
