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


_FIX_ACCOUNT = "we will send the payment once it is fixed."
_ACCOUNT_NEXT_STEP = "nothing for an operator: `refresh` pays it once the account is ready (or `retry` it now)"


@dataclass(frozen=True)
class StripeErrorCode:
    """Everything one Stripe error code of POST /v1/transfers means, in one row.

    `disposition`: what the attempt and the item become (module docstring). `meaning` and `next_step`: the
    operator's runbook (docs/operations.md's table is generated from these rows; a test holds them equal).
    `affiliate_words`: what the affiliate reads in their history (None: the generic words). `account_fix`:
    set for the codes a fix on the affiliate's side clears, as (what happened, what lets us retry): `refresh`
    re-attempts such an item by itself, with a new attempt, once pre-flight says the account is ready, and
    the history promises exactly that. `stops_currency`: the paying account ran out of this currency: the
    run sends no more of it (the other items stay payable, nothing is wrong with the affiliates)."""

    code: str
    disposition: Disposition
    meaning: str
    next_step: str
    affiliate_words: str | None = None
    account_fix: tuple[str, str] | None = None
    stops_currency: bool = False


# To make a new code retry automatically after the affiliate fixes their account: add its row with
# `disposition=Disposition.FAILED` and an `account_fix`. To make it retry on the next run without anyone:
# `Disposition.FAILED_RETRYABLE`. Codes not listed fall back by HTTP status (`classify`, FALLBACKS).
ERROR_CODES: dict[str, StripeErrorCode] = {
    e.code: e
    for e in (
        StripeErrorCode(
            "insufficient_capabilities_for_transfer",
            Disposition.FAILED,
            "the account lacks the active `transfers` capability",
            _ACCOUNT_NEXT_STEP,
            "Your payout account is not yet set up to receive transfers. Please finish the verification steps of "
            "your payout account; " + _FIX_ACCOUNT,
            (
                "your payout account is not yet set up to receive transfers",
                "you finish the verification steps of your payout account",
            ),
        ),
        StripeErrorCode(
            "account_invalid",
            Disposition.FAILED,
            "the account is rejected, closed or not connected to the paying account",
            _ACCOUNT_NEXT_STEP + "; a closed account needs a new one from the affiliate (affiliates import)",
            "Your payout account could not accept this payment. Please check the details of your payout account; "
            + _FIX_ACCOUNT,
            ("your payout account could not accept this payment", "the details of your payout account are corrected"),
        ),
        StripeErrorCode(
            "transfers_not_allowed",
            Disposition.FAILED,
            "transfers to this account are not allowed (region, restrictions)",
            "escalate to Stripe support; `refresh` pays it once transfers are allowed again",
            "Transfers to your payout account are not allowed at the moment. Please contact support so we can help "
            "you receive this payment.",
            (
                "transfers to your payout account are not allowed at the moment",
                "transfers are enabled on your payout account again (contact support if you need help)",
            ),
        ),
        StripeErrorCode(
            "resource_missing",
            Disposition.FAILED,
            "the destination account id does not exist",
            "correct the affiliate's account id (affiliates import), then `retry`",
            "We could not find your payout account. Please reconnect your payout account; " + _FIX_ACCOUNT,
        ),
        StripeErrorCode(
            "amount_too_small",
            Disposition.FAILED,
            "below Stripe's minimum transfer",
            "raise the program's minimum payout (`programs update --minimum`); the item is carried at month end",
            "This amount is too small to send as a transfer. Our support team will follow up.",
        ),
        StripeErrorCode(
            # Also what Stripe (and the sandbox) answer for a transfer above what is left of its
            # source_transaction charge: the merchant's money, not the affiliate's account, is the matter.
            "amount_too_large",
            Disposition.FAILED,
            "more than the funding charge named as `source_transaction` has left",
            "record more funding for the program (`programs fund`), then `retry`",
            "We could not send this payment from the program's funds yet. Our team has been notified and will "
            "follow up; your balance is safe.",
        ),
        StripeErrorCode(
            "parameter_invalid_integer",
            Disposition.FAILED,
            "a request the engine built wrongly",
            "engineering incident",
        ),
        StripeErrorCode(
            "parameter_missing", Disposition.FAILED, "a request the engine built wrongly", "engineering incident"
        ),
        StripeErrorCode(
            "parameter_unknown", Disposition.FAILED, "a request the engine built wrongly", "engineering incident"
        ),
        StripeErrorCode(
            # Stored under the key, so the next run needs a new attempt; the item stays payable.
            "balance_insufficient",
            Disposition.FAILED_RETRYABLE,
            "the paying account's balance ran out mid-batch",
            "top up (or fund the program), then re-run execution: a new attempt, a new key",
            "A temporary delay on our side held this payment. It will be sent automatically in a later payout run; "
            "no action is needed.",
            stops_currency=True,
        ),
        # Not executed (rate limiter, lock contention, the same key still running): same key, later.
        StripeErrorCode("rate_limit", Disposition.RETRY_SAME_KEY, "Stripe asked to slow down", "nothing"),
        StripeErrorCode("lock_timeout", Disposition.RETRY_SAME_KEY, "Stripe was busy with the same object", "nothing"),
        StripeErrorCode(
            "idempotency_key_in_use", Disposition.RETRY_SAME_KEY, "the same key is still running at Stripe", "nothing"
        ),
        StripeErrorCode(
            # A transfer may exist under the key: never a new key for that payment; the lookup by transfer
            # group and metadata adopts it or blocks the item.
            "idempotency_error",
            Disposition.KEY_REFUSED,
            "the key was first used with other parameters (another ledger with different amounts)",
            "a matching transfer is adopted; otherwise the item is `blocked` (docs/operations.md, Blocked items)",
        ),
    )
}

# What `classify` decides for a code not in ERROR_CODES, by HTTP status (for the runbook's table).
FALLBACKS: tuple[tuple[str, Disposition, str, str], ...] = (
    ("other 4xx (`http_4xx`)", Disposition.FAILED, "refused for good", "read the message; fix the cause; `retry`"),
    ("other 429 / 409", Disposition.RETRY_SAME_KEY, "not executed", "nothing; the same key is sent again"),
    (
        "`api_connection_error`, `http_5xx`",
        Disposition.UNKNOWN,
        "network or Stripe error after the SDK's own retries: it may have executed",
        "`refresh` resolves it (the same key, or the transfer found by its group and metadata)",
    ),
)

_OUTCOME_WORDS = {
    Disposition.FAILED: "failed",
    Disposition.FAILED_RETRYABLE: "attempt failed, item stays payable",
    Disposition.RETRY_SAME_KEY: "retried with the same key",
    Disposition.KEY_REFUSED: "adopted or blocked",
    Disposition.UNKNOWN: "unknown: stays `processing`",
}

# Views of the table for the code that needs one column.
ERROR_CODE_DISPOSITIONS: dict[str, Disposition] = {c: e.disposition for c, e in ERROR_CODES.items()}
CLEARED_BY_ACCOUNT_FIX: frozenset[str] = frozenset(c for c, e in ERROR_CODES.items() if e.account_fix)


def stops_currency(code: str | None) -> bool:
    """The paying account has no more of this currency: the run stops sending it (see StripeErrorCode)."""
    entry = ERROR_CODES.get(code or "")
    return entry is not None and entry.stops_currency


def runbook_table() -> str:
    """docs/operations.md's "Stripe error codes the engine records" table, generated from the rows above."""
    lines = ["| code | outcome | meaning | what to do |", "|---|---|---|---|"]
    lines += [
        f"| `{e.code}` | {_OUTCOME_WORDS[e.disposition]} | {e.meaning} | {e.next_step} |" for e in ERROR_CODES.values()
    ]
    lines += [f"| {name} | {_OUTCOME_WORDS[d]} | {meaning} | {step} |" for name, d, meaning, step in FALLBACKS]
    return "\n".join(lines) + "\n"


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


if __name__ == "__main__":  # print the runbook's table (docs/operations.md)
    print(runbook_table(), end="")
