"""The one table of Stripe error codes: what each means for an attempt (from real SDK exceptions), for the
operator (the runbook table is generated from it) and for the affiliate."""

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


def test_the_runbook_table_is_the_code_table():
    """docs/operations.md shows exactly the rows of error_codes.ERROR_CODES (generated, never edited by hand)."""
    from pathlib import Path

    from sorae_payouts.stripe_gateway.error_codes import runbook_table

    doc = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    table = doc.split("<!-- error-codes:begin -->\n", 1)[1].split("<!-- error-codes:end -->", 1)[0]
    assert table == runbook_table()


def test_every_code_has_the_words_its_disposition_needs():
    """A failure the affiliate can fix names the fix; every code an affiliate may see as a failure has words;
    an automatic re-attempt is promised only where the engine makes one."""
    from sorae_payouts.portal.history import ERROR_WORDS, FAILURE_FIX
    from sorae_payouts.stripe_gateway.error_codes import CLEARED_BY_ACCOUNT_FIX, ERROR_CODES

    for code, entry in ERROR_CODES.items():
        assert entry.meaning and entry.next_step, code
        if entry.account_fix:
            assert entry.disposition is Disposition.FAILED, code
        if entry.disposition in (Disposition.FAILED, Disposition.FAILED_RETRYABLE) and not code.startswith(
            "parameter_"
        ):
            assert code in ERROR_WORDS, f"{code}: the affiliate's history would show generic words"
    assert set(FAILURE_FIX) == set(CLEARED_BY_ACCOUNT_FIX)


def test_only_the_balance_code_stops_a_currency():
    from sorae_payouts.stripe_gateway.error_codes import stops_currency

    assert stops_currency("balance_insufficient")
    assert not stops_currency("account_invalid") and not stops_currency(None) and not stops_currency("new_code")
