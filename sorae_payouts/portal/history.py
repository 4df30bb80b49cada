"""An affiliate's payout history, in words the affiliate understands (for the portal and the CLI).

Each month Sorae builds one payout item per affiliate and currency. The history shows, newest month
first, what the affiliate earned in the month and how (gross commissions, orders reversed in the
month, clawbacks of commissions from earlier months that were reversed later), the balance carried
in from earlier months, the total due, and what became of it: paid (with the Stripe transfer id),
being sent, scheduled, carried to a named month, on hold, failed (with the fix that lets us retry),
or reversed by the merchant (with the date, and whether it is under review, paid again with a later
payout, or taken back for good), with a plain-language reason and the amount still outstanding.
One person may be an affiliate of several programs (merchants) under one affiliate id: the history
covers all of them (or one, `program_id=`), each entry naming its program and merchant.

It reads only the `affiliate_payout_history` view (0004, replaced by 0009 and 0012), only the asked
affiliate's rows, selected with a bound parameter. The view holds no idempotency keys, Stripe request
ids or Stripe error messages, and the wording never echoes raw hold or error text: an affiliate sees
our sentences, never our internals. The portal's role needs SELECT on that view only (plus SELECT on
`program (program_id, name)` once a second program exists, for the merchants' names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import period_key
from sorae_payouts.ledger.item_states import HELD, PAID, AttemptState, ItemStatus
from sorae_payouts.ledger.sql import as_date
from sorae_payouts.registry.programs import DEFAULT_PROGRAM
from sorae_payouts.stripe_gateway.error_codes import ERROR_CODES

VIEW = "affiliate_payout_history"

_COLUMNS = (
    "SELECT period, currency, commission_count, gross_minor, in_period_adjustments_minor, clawbacks_minor, "
    "earned_minor, carried_in_minor, amount_minor, minimum_minor, item_status, carry_reason, hold_reason, "
    "attempt_state, stripe_transfer_id, error_code, reversed_minor, reversed_at, reversal_pending_minor, "
    "owed_again_minor, written_off_minor, owed_again_in_period, next_batch_period, outstanding_minor, program_id "
    f"FROM {VIEW} WHERE affiliate_id = :affiliate_id"
)
_ORDER = " ORDER BY period DESC, program_id, currency"
_HISTORY = sa.text(_COLUMNS + _ORDER).bindparams(sa.bindparam("affiliate_id", type_=sa.String()))
_PROGRAM_HISTORY = sa.text(_COLUMNS + " AND program_id = :program_id" + _ORDER).bindparams(
    sa.bindparam("affiliate_id", type_=sa.String()), sa.bindparam("program_id", type_=sa.String())
)

# Item status (plus hold) -> (stable code for programs, words for the affiliate).
STATUS_WORDS = {
    ItemStatus.POSTED: ("paid", "Paid"),
    ItemStatus.PROCESSING: ("sending", "Sending"),
    ItemStatus.PENDING: ("scheduled", "Scheduled"),
    HELD: ("on_hold", "On hold"),
    ItemStatus.CARRIED_FORWARD: (ItemStatus.CARRIED_FORWARD, "Carried to next month"),
    ItemStatus.FAILED: (ItemStatus.FAILED, "Payment failed"),
    ItemStatus.BLOCKED: ("in_review", "In review"),
}
# The merchant named for the default program (the name the history used before programs existed);
# other programs are named by their program's name.
DEFAULT_MERCHANT_NAME = "Sorae"
_UNKNOWN_STATUS = ("in_review", "In review")

# Stripe error codes -> what the affiliate should know or do: the words live in the one table of error
# codes (`stripe_gateway.error_codes.ERROR_CODES`), beside their disposition and the operator's next step.
ERROR_WORDS = {c: e.affiliate_words for c, e in ERROR_CODES.items() if e.affiliate_words} | {
    # A hold (`funding.HOLD_CODE`), not a Stripe error: the program's recorded funding cannot pay this item yet.
    "insufficient_program_funds": "This payment is scheduled and waits for the program's funds. It will be sent in "
    "a later payout run; no action is needed.",
}
# Failures a fix on the affiliate's side clears, as (what happened, what lets us retry), for
# "Payment failed: <what happened>; we will retry automatically once <fix>.": exactly the codes `refresh`
# re-attempts by itself (the same table's `account_fix`), so the history never promises a retry the
# engine does not make. Other codes use ERROR_WORDS.
FAILURE_FIX = {c: e.account_fix for c, e in ERROR_CODES.items() if e.account_fix}
GENERIC_FAILURE = (
    "We could not complete this payment. Our team has been notified and will follow up; your balance is safe."
)
GENERIC_HOLD = "This payment is on hold while we check your payout account. It will be sent as soon as possible."
PAYOUTS_PAUSED = (
    "Payouts are paused on your payout account until the information it asks for is provided. "
    "Please review your payout account; we will send the payment once it is ready."
)
# Hold reasons are operator text (`AccountReadiness.hold_reason`, `attempts.record`): matched by their
# stable beginning and translated, never shown as is (they name accounts and internal codes).
_HOLD_PATTERNS = (
    (re.compile(r"^connected account \S+ not found"), ERROR_WORDS["resource_missing"]),
    (re.compile(r"^transfers capability is"), ERROR_WORDS["insufficient_capabilities_for_transfer"]),
    (re.compile(r"^payouts disabled"), PAYOUTS_PAUSED),
    (re.compile(r"^platform balance ran out"), ERROR_WORDS["balance_insufficient"]),  # run.py, mid-run
    # Never echo the other affiliates' ids: the reason names them for operators only.
    (
        re.compile(r"^shared_destination:"),
        "This payment is on hold: your payout account is also registered for "
        "another partner account, so we are checking who it belongs to. Please "
        "contact support if you did not expect this.",
    ),
)
_HOLD_CODE = re.compile(r"^([a-z_]+):")


@dataclass(frozen=True)
class HistoryEntry:
    """One month (and currency) of an affiliate's payouts. Amounts are integer minor units.

    earned = gross + in_period_adjustments + clawbacks (adjustments and clawbacks are <= 0);
    amount = earned + carried_in is what was due this month (negative: owed back from later earnings).
    """

    period: date
    currency: str
    commission_count: int
    gross_minor: int
    in_period_adjustments_minor: int
    clawbacks_minor: int
    earned_minor: int
    carried_in_minor: int
    amount_minor: int
    minimum_minor: int | None
    status_code: str
    status: str
    transfer_id: str | None
    reason: str | None
    reversed_minor: int = 0
    reversal_pending_minor: int = 0
    owed_again_minor: int = 0
    written_off_minor: int = 0
    outstanding_minor: int = 0
    reversed_on: date | None = None
    carried_to: date | None = None
    program_id: str = DEFAULT_PROGRAM
    merchant: str = DEFAULT_MERCHANT_NAME

    def money(self, amount_minor: int) -> str:
        return format_minor(amount_minor, self.currency)

    def as_json(self) -> dict:
        """Plain JSON: every amount as minor units (`*_minor`) and as a display string ("123.45 usd")."""

        def pair(name: str) -> dict:
            value = getattr(self, f"{name}_minor")
            return {f"{name}_minor": value, name: self.money(value)}

        return {
            "period": period_key(self.period),
            "program_id": self.program_id,
            "merchant": self.merchant,
            "currency": self.currency,
            "status": self.status,
            "status_code": self.status_code,
            "transfer_id": self.transfer_id,
            "reason": self.reason,
            "breakdown": {
                "commission_count": self.commission_count,
                **pair("gross"),
                **pair("in_period_adjustments"),
                **pair("clawbacks"),
            },
            **pair("earned"),
            **pair("carried_in"),
            **pair("amount"),
            **pair("outstanding"),
            "reversal": {
                **pair("reversed"),
                **pair("reversal_pending"),
                **pair("owed_again"),
                **pair("written_off"),
                "reversed_on": self.reversed_on.isoformat() if self.reversed_on else None,
            },
            "carried_to": period_key(self.carried_to) if self.carried_to else None,
        }


def affiliate_history(
    conn: sa.Connection, affiliate_id: str, *, program_id: str | None = None, merchant_name: str | None = None
) -> list[HistoryEntry]:
    """Every payout item of `affiliate_id` in every program it belongs to (or in `program_id` only),
    newest period first (then by program and currency); read-only. The merchant of each entry is its
    program's name (`DEFAULT_MERCHANT_NAME` for the default program), or `merchant_name` for all.
    An unknown affiliate, or one without any payout item yet, gets an empty list."""
    scope = (
        {"affiliate_id": affiliate_id}
        if program_id is None
        else {"affiliate_id": affiliate_id, "program_id": program_id}
    )
    rows = conn.execute(_HISTORY if program_id is None else _PROGRAM_HISTORY, scope).mappings().all()
    names = _merchant_names(conn, {row["program_id"] for row in rows}) if merchant_name is None else {}
    return [_entry(row, merchant_name or names[row["program_id"]]) for row in rows]


def _merchant_names(conn: sa.Connection, program_ids: set[str]) -> dict[str, str]:
    """program id -> merchant name. Reads `program` only for programs other than the default one, so a
    single-program portal needs nothing but the view."""
    names = {DEFAULT_PROGRAM: DEFAULT_MERCHANT_NAME}
    others = sorted(program_ids - {DEFAULT_PROGRAM})
    if others:
        statement = sa.text("SELECT program_id, name FROM program WHERE program_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        names.update(conn.execute(statement, {"ids": others}).all())
    return {p: names.get(p, p) for p in program_ids}


def _entry(row, merchant_name: str) -> HistoryEntry:
    currency = row["currency"]
    held = row["item_status"] == ItemStatus.PENDING and bool(row["hold_reason"])
    status_code, status = STATUS_WORDS.get(HELD if held else row["item_status"], _UNKNOWN_STATUS)
    amount, minimum = int(row["amount_minor"]), _int_or_none(row["minimum_minor"])
    paid = row["item_status"] in PAID and row["attempt_state"] == AttemptState.POSTED
    carried_to = as_date(row["next_batch_period"]) if row["next_batch_period"] else None
    if status_code == "carried_forward" and carried_to:
        status = f"Carried to {period_key(carried_to)}"
    reversal = _reversal(row, merchant_name)
    if reversal is not None:
        status_code, status = reversal[0], reversal[1]
    return HistoryEntry(
        period=as_date(row["period"]),
        currency=currency,
        commission_count=int(row["commission_count"]),
        gross_minor=int(row["gross_minor"]),
        in_period_adjustments_minor=int(row["in_period_adjustments_minor"]),
        clawbacks_minor=int(row["clawbacks_minor"]),
        earned_minor=int(row["earned_minor"]),
        carried_in_minor=int(row["carried_in_minor"]),
        amount_minor=amount,
        minimum_minor=minimum,
        status_code=status_code,
        status=status,
        transfer_id=row["stripe_transfer_id"] if paid else None,
        reason=reversal[2]
        if reversal is not None
        else explain(
            status_code,
            currency=currency,
            amount_minor=amount,
            minimum_minor=minimum,
            carry_reason=row["carry_reason"],
            hold_reason=row["hold_reason"],
            error_code=row["error_code"],
        ),
        reversed_minor=int(row["reversed_minor"]),
        reversal_pending_minor=int(row["reversal_pending_minor"]),
        owed_again_minor=int(row["owed_again_minor"]),
        written_off_minor=int(row["written_off_minor"]),
        outstanding_minor=int(row["outstanding_minor"]),
        reversed_on=as_date(row["reversed_at"]) if row["reversed_at"] else None,
        carried_to=carried_to,
        program_id=row["program_id"],
        merchant=merchant_name,
    )


def _reversal(row, merchant_name: str) -> tuple[str, str, str] | None:
    """(status code, status, reason) of a reversed item: "Reversed by <merchant> on <date>" and what
    happens to the reversed money (under review, paid again in a named month, or taken back)."""
    reversed_minor = int(row["reversed_minor"] or 0)
    if reversed_minor <= 0:
        return None
    currency, amount = row["currency"], int(row["amount_minor"])
    on = f" on {as_date(row['reversed_at']).isoformat()}" if row["reversed_at"] else ""
    status = f"Reversed by {merchant_name}{on}"
    taken = (
        f"{format_minor(reversed_minor, currency)} of this {format_minor(amount, currency)} payment was taken back"
        if reversed_minor < amount
        else f"This {format_minor(amount, currency)} payment was taken back"
    )
    parts = [f"{taken} by {merchant_name}."]
    pending, owed, written = (
        int(row[k] or 0) for k in ("reversal_pending_minor", "owed_again_minor", "written_off_minor")
    )
    if owed:
        month = row["owed_again_in_period"]
        parts.append(
            f"{format_minor(owed, currency)} is owed to you again and will be paid with your "
            + (f"{period_key(as_date(month))} payout." if month else "next payout.")
        )
    if written:
        parts.append(
            f"{format_minor(written, currency)} will not be paid again; contact support if you have questions."
        )
    if pending:
        parts.append(
            f"We are reviewing {format_minor(pending, currency)}; you will see here whether it is paid "
            "again. No action is needed from you."
        )
        return "reversal_pending", status, " ".join(parts)
    return ("reversed" if reversed_minor >= amount else "partially_reversed"), status, " ".join(parts)


def explain(
    status_code: str,
    *,
    currency: str,
    amount_minor: int,
    minimum_minor: int | None,
    carry_reason: str | None,
    hold_reason: str | None,
    error_code: str | None,
) -> str | None:
    """The plain-language reason for an item's status (None when "Paid" says it all)."""
    balance = format_minor(amount_minor, currency)
    if status_code == "carried_forward":
        return _carry_words(carry_reason, balance, currency, minimum_minor)
    if status_code == "failed":
        if (error_code or "") in FAILURE_FIX:
            what, fix = FAILURE_FIX[error_code]
            return f"Payment failed: {what}; we will retry automatically once {fix}. Amount outstanding: {balance}."
        return ERROR_WORDS.get(error_code or "", GENERIC_FAILURE)
    if status_code == "on_hold":
        return hold_words(hold_reason or "")
    if status_code == "sending":
        return "Your payment is on its way to your payout account."
    if status_code == "scheduled":
        return "Your payment is scheduled to be sent to your payout account."
    if status_code == "paid":
        return None
    return "We are reviewing this payment; no action is needed from you."


def _carry_words(carry_reason: str | None, balance: str, currency: str, minimum_minor: int | None) -> str:
    if carry_reason == "below_minimum":
        if minimum_minor is None:
            return f"Your balance of {balance} is below the minimum payout; it carries to next month."
        return (
            f"Your balance of {balance} is below the {format_minor(minimum_minor, currency)} minimum payout; "
            "it carries to next month."
        )
    if carry_reason == "negative_balance":
        return (
            f"Some orders were reversed or refunded after you earned their commission, leaving a balance of "
            f"{balance}; it carries to next month and is deducted from your next commissions."
        )
    if carry_reason == "zero_balance":
        return "Nothing to pay this month: your commissions and reversed orders balance out."
    if carry_reason == "not_onboarded":
        return (
            f"Connect your payout account to receive payments. Your balance of {balance} is kept and "
            "carries to next month."
        )
    return f"Your balance of {balance} carries to next month."


def hold_words(hold_reason: str) -> str:
    """A hold reason (operator text) as affiliate wording; unknown reasons get a generic sentence."""
    for pattern, words in _HOLD_PATTERNS:
        if pattern.match(hold_reason):
            return words
    code = _HOLD_CODE.match(hold_reason)
    if code and code.group(1) in ERROR_WORDS:
        return ERROR_WORDS[code.group(1)]
    return GENERIC_HOLD


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)
