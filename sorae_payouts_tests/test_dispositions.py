"""The disposition table: what each Stripe error means for an attempt, from real SDK exceptions."""

from __future__ import annotations

import pytest
import stripe

from sorae_payouts.stripe_gateway import Disposition, classify


def _error(status: int, code: str | None, kind: str = "invalid_request_error", cls=stripe.InvalidRequestError):
    body = {"error": {"type": kind, "code": code, "message": f"{code} happened"}}
    if cls is stripe.InvalidRequestError:
        return cls(
            f"{code} happened", None, code=code, http_status=status, json_body=body, headers={"request-id": "req_1"}
        )
    return cls(f"{code} happened", http_status=status, json_body=body, headers={"request-id": "req_1"})


@pytest.mark.parametrize(
    "status, code, cls, expected",
    [
        (400, "insufficient_capabilities_for_transfer", stripe.InvalidRequestError, Disposition.FAILED),
        (400, "account_invalid", stripe.InvalidRequestError, Disposition.FAILED),
        (400, "transfers_not_allowed", stripe.InvalidRequestError, Disposition.FAILED),
        (404, "resource_missing", stripe.InvalidRequestError, Disposition.FAILED),
        (400, "amount_too_small", stripe.InvalidRequestError, Disposition.FAILED),
        (400, "balance_insufficient", stripe.InvalidRequestError, Disposition.FAILED_RETRYABLE),
        (429, "rate_limit", stripe.RateLimitError, Disposition.RETRY_SAME_KEY),
        (429, "lock_timeout", stripe.RateLimitError, Disposition.RETRY_SAME_KEY),
        (409, "idempotency_key_in_use", stripe.APIError, Disposition.RETRY_SAME_KEY),
        (400, None, stripe.IdempotencyError, Disposition.KEY_REFUSED),
        (500, None, stripe.APIError, Disposition.UNKNOWN),
        (400, "something_new", stripe.InvalidRequestError, Disposition.FAILED),
        (429, None, stripe.RateLimitError, Disposition.RETRY_SAME_KEY),
    ],
)
def test_table(status, code, cls, expected):
    result = classify(_error(status, code, cls=cls))
    assert result.disposition is expected
    assert result.request_id == "req_1" and result.http_status == status
    assert result.code == (
        code or {409: "conflict", 500: "http_500", 400: "idempotency_error", 429: "rate_limit"}[status]
    )


def test_connection_error_is_unknown():
    result = classify(stripe.APIConnectionError("connection reset"))
    assert (result.disposition, result.code) == (Disposition.UNKNOWN, "api_connection_error")


@pytest.mark.parametrize(
    "code, message",
    [
        ("amount_too_large", "Insufficient funds in source transaction ch_1: ..."),  # the sandbox's overspend answer
        (
            None,
            "The currency of source_transaction's balance transaction (usd) must be the same as the transfer "
            "currency (eur)",
        ),
        ("resource_missing", "No such charge: 'ch_1'"),
        ("balance_insufficient", "whatever Stripe says about the charge's funds"),
    ],
)
def test_a_refusal_because_of_the_source_charge_is_final(code, message):
    """Refused because of the charge it names (param source_transaction): the same charge will never pay it."""
    body = {"error": {"type": "invalid_request_error", "code": code, "message": message, "param": "source_transaction"}}
    error = stripe.InvalidRequestError(
        message, "source_transaction", code=code, http_status=400, json_body=body, headers={"request-id": "req_1"}
    )
    result = classify(error)
    assert result.disposition is Disposition.FAILED and result.code == (code or "http_400")
    assert result.message == message
