"""Reversed money: from a Stripe reversal to an operator's decision.

The life of a reversed cent:
1. Stripe reverses (part of) a posted transfer (a merchant's dashboard action, or our own
   negative-balance recovery). `refresh` sees `amount_reversed` grow, appends a `transfer_status_event`
   and, in the same transaction, sets the item's `reversed_minor` and status (`posted` ->
   `partially_reversed` | `reversed`, `partially_reversed` -> `reversed`): `record_reversal`.
2. The reversed amount not yet decided is the item's *reversal pending* amount
   (`reversed_minor` - decisions). It is shown everywhere and never re-paid nor forgotten.
3. An operator of the item's program decides (`resolve_reversal`), signing the decision with their own
   key (`core.signing`; the operator is whoever holds the key), appending a `reversal_decision`:
   - `owe_again`: the amount flows into the affiliate's next built batch as carried-in
     (`manifest.owed_again_carries`), one line in that manifest says why;
   - `write_off`: closed, with the reason (required).
Nothing is edited: the reversed month's item keeps its amounts; decisions are appended rows, and the
database refuses a decision larger than what is still pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.money import format_minor
from sorae_payouts.core.periods import period_key
from sorae_payouts.core.signing import SigningKey, signed_time, verify
from sorae_payouts.ledger.sql import as_date, as_utc, text
from sorae_payouts.registry.operators import OperatorError, find_operator, require_signer
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

OWE_AGAIN, WRITE_OFF = "owe_again", "write_off"


class ReversalError(PayoutRefused):
    """The reversal decision is refused; the message says why."""


@dataclass(frozen=True)
class ReversalState:
    """Stripe's reversal state of a posted attempt's transfer, as seen now."""

    attempt_pk: int
    payout_item_id: int
    stripe_transfer_id: str
    reversed: bool
    amount_reversed_minor: int


def record_reversal(conn: sa.Connection, state: ReversalState, now: datetime) -> bool:
    """Append the transfer's reversal state and move the item (the only writer of `reversed_minor`).
    No-op (False) when the last recorded state is the same. Call inside a transaction."""
    last = conn.execute(
        text(
            "SELECT reversed, amount_reversed_minor FROM transfer_status_event WHERE attempt_pk = :a "
            "ORDER BY event_pk DESC LIMIT 1"
        ),
        {"a": state.attempt_pk},
    ).first()
    if last is not None and (bool(last[0]), int(last[1])) == (state.reversed, state.amount_reversed_minor):
        return False
    conn.execute(
        text(
            "INSERT INTO transfer_status_event (attempt_pk, stripe_transfer_id, reversed, amount_reversed_minor, "
            "recorded_at) VALUES (:a, :t, :r, :m, :now)"
        ),
        {
            "a": state.attempt_pk,
            "t": state.stripe_transfer_id,
            "r": state.reversed,
            "m": state.amount_reversed_minor,
            "now": now,
        },
    )
    if state.amount_reversed_minor > 0:
        # Reversals only grow in Stripe; the trigger refuses a decrease, the WHERE skips a stale reader.
        conn.execute(
            text(
                "UPDATE payout_item SET reversed_minor = :m, status_updated_at = :now, "
                "status = CASE WHEN :m >= amount_minor THEN 'reversed' ELSE 'partially_reversed' END "
                "WHERE payout_item_id = :i AND status IN ('posted', 'partially_reversed') AND reversed_minor < :m"
            ),
            {"m": state.amount_reversed_minor, "i": state.payout_item_id, "now": now},
        )
    return True


@dataclass
class ReversedItem:
    payout_item_id: int
    period: date
    affiliate_id: str
    currency: str
    amount_minor: int
    status: str
    stripe_transfer_id: str | None
    reversed_minor: int
    owed_again_minor: int
    written_off_minor: int
    reversed_at: datetime | None
    program_id: str = DEFAULT_PROGRAM

    @property
    def pending_minor(self) -> int:
        return self.reversed_minor - self.owed_again_minor - self.written_off_minor

    def as_json(self) -> dict:
        money = {k: getattr(self, f"{k}_minor") for k in ("amount", "reversed", "owed_again", "written_off", "pending")}
        return {
            "payout_item_id": self.payout_item_id,
            "program_id": self.program_id,
            "period": period_key(self.period),
            "affiliate_id": self.affiliate_id,
            "currency": self.currency,
            "status": self.status,
            "stripe_transfer_id": self.stripe_transfer_id,
            "reversed_at": self.reversed_at.isoformat() if self.reversed_at else None,
            "state": "reversal_pending" if self.pending_minor else "resolved",
            **{f"{k}_minor": v for k, v in money.items()},
            **{k: format_minor(v, self.currency) for k, v in money.items()},
        }


_REVERSED_ITEMS = """
SELECT i.payout_item_id, b.period, i.affiliate_id, i.currency, i.amount_minor, i.status, i.reversed_minor,
       i.program_id,
       (SELECT a.stripe_transfer_id FROM transfer_attempt a WHERE a.payout_item_id = i.payout_item_id
        AND a.state = 'posted') AS stripe_transfer_id,
       COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d WHERE d.payout_item_id = i.payout_item_id
                 AND d.decision = 'owe_again'), 0) AS owed_again,
       COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d WHERE d.payout_item_id = i.payout_item_id
                 AND d.decision = 'write_off'), 0) AS written_off,
       (SELECT MAX(e.recorded_at) FROM transfer_status_event e JOIN transfer_attempt x ON x.attempt_pk = e.attempt_pk
        WHERE x.payout_item_id = i.payout_item_id AND e.amount_reversed_minor > 0) AS reversed_at
FROM payout_item i JOIN payout_batch b ON b.batch_id = i.batch_id
WHERE i.reversed_minor > 0 {where}
ORDER BY b.period, i.payout_item_id
"""


def reversed_items(
    conn: sa.Connection,
    period: date | None = None,
    *,
    program_id: str | None = DEFAULT_PROGRAM,
    item_id: int | None = None,
    batch_id: str | None = None,
) -> list[ReversedItem]:
    """Items with reversed money, with what was decided: of one item or one batch (ids are unique across
    programs), else of the program (None: every program), of one period or all."""
    where, params = "", {}
    if period is not None:
        where, params = "AND b.period = :period", {"period": period}
    if batch_id is not None:
        where, params = "AND i.batch_id = :b", {"b": batch_id}
    if item_id is not None:
        where, params = "AND i.payout_item_id = :i", {"i": item_id}
    elif program_id is not None and batch_id is None:
        where, params = f"{where} AND b.program_id = :p", {**params, "p": program_id}
    return [
        ReversedItem(
            int(r.payout_item_id),
            as_date(r.period),
            r.affiliate_id,
            r.currency,
            int(r.amount_minor),
            r.status,
            r.stripe_transfer_id,
            int(r.reversed_minor),
            int(r.owed_again),
            int(r.written_off),
            as_utc(r.reversed_at) if r.reversed_at else None,
            r.program_id,
        )
        for r in conn.execute(text(_REVERSED_ITEMS.format(where=where)), params)
    ]


@dataclass(frozen=True)
class Decision:
    decision_pk: int
    item: ReversedItem
    decision: str
    amount_minor: int
    decided_by: str
    reason: str | None
    carried_into: str  # where owed-again money goes: "the next batch built (YYYY-MM ...)" or "closed"


DECISION = "reversal-decision"


def decision_fields(item: ReversedItem, decision: str, amount_minor: int, reason, operator_id, key_id, at) -> dict:
    """The signed content of an operator's decision: the item, its program, what and how much, who and when."""
    return {
        "program": item.program_id,
        "payout_item_id": item.payout_item_id,
        "decision": decision,
        "amount_minor": int(amount_minor),
        "currency": item.currency,
        "reason": reason,
        "operator": operator_id,
        "key_id": key_id,
        "decided_at": signed_time(at),
    }


@dataclass(frozen=True)
class SignedDecision:
    """A decision signed outside the engine (for the Dagster job): no secret, bound to one item and amount."""

    operator: str
    decided_at: datetime
    amount_minor: int
    signature: str

    def as_run_config(self) -> dict:
        return {
            "operator": self.operator,
            "decided_at": signed_time(self.decided_at),
            "amount_minor": self.amount_minor,
            "signature": self.signature,
        }


def _checked(decision: str, reason: str | None) -> str | None:
    reason = (reason or "").strip() or None
    if decision not in (OWE_AGAIN, WRITE_OFF):
        raise ReversalError(f"decision must be {OWE_AGAIN} or {WRITE_OFF}, not {decision!r}")
    if decision == WRITE_OFF and not reason:
        raise ReversalError("a write-off needs a reason (--reason), kept with the decision")
    return reason


def _pending_item(conn: sa.Connection, item_id: int, program_id: str) -> ReversedItem:
    found = reversed_items(conn, item_id=item_id)
    if not found:
        raise ReversalError(
            f"item {item_id} has no reversed money (unknown item, or no reversal seen by "
            "refresh yet: run `sorae-payouts refresh` first)"
        )
    item = found[0]
    if item.program_id != program_id:
        raise ReversalError(
            f"item {item_id} is not an item of program {program_id}; a decision belongs to the operators of the "
            "item's own program (`reversals list --program ...` shows each item's program)"
        )
    if item.pending_minor <= 0:
        raise ReversalError(
            f"item {item_id} has nothing pending: {format_minor(item.reversed_minor, item.currency)} "
            f"reversed, {format_minor(item.owed_again_minor, item.currency)} owed again, "
            f"{format_minor(item.written_off_minor, item.currency)} written off"
        )
    return item


def sign_decision(
    engine: sa.Engine,
    item_id: int,
    decision: str,
    *,
    program_id: str,
    key: SigningKey,
    reason: str | None,
    now: datetime,
    acting_as: str | None = None,
) -> SignedDecision:
    """The key's operator's signature of deciding the item's whole pending amount (recorded nowhere)."""
    reason, now = _checked(decision, reason), now.astimezone(UTC)
    with engine.connect() as conn:
        item = _pending_item(conn, item_id, program_id)
        try:
            operator = require_signer(conn, program_id, key, acting_as=acting_as)
        except OperatorError as exc:
            raise ReversalError(f"decision refused: {exc}") from exc
    fields = decision_fields(item, decision, item.pending_minor, reason, operator.operator_id, key.key_id, now)
    return SignedDecision(operator.operator_id, now, item.pending_minor, key.sign(DECISION, fields))


def resolve_reversal(
    engine: sa.Engine,
    item_id: int,
    decision: str,
    *,
    program_id: str,
    key: SigningKey,
    reason: str | None,
    now: datetime,
    acting_as: str | None = None,
) -> Decision:
    """Decide, as the key's operator (an active operator of the item's program), what the item's pending
    reversed amount means: owed again, or written off (with a reason). Appends one signed
    `reversal_decision` for the whole pending amount."""
    signed = sign_decision(
        engine, item_id, decision, program_id=program_id, key=key, reason=reason, now=now, acting_as=acting_as
    )
    return record_signed_decision(engine, item_id, decision, signed, program_id=program_id, reason=reason)


def record_signed_decision(
    engine: sa.Engine, item_id: int, decision: str, signed: SignedDecision, *, program_id: str, reason: str | None
) -> Decision:
    """Record a decision signed with the operator's current key, for exactly the amount still pending."""
    reason = _checked(decision, reason)
    at = signed.decided_at.astimezone(UTC)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # two decisions at once queue here and the later sees the first
            conn.execute(
                text("SELECT payout_item_id FROM payout_item WHERE payout_item_id = :i FOR UPDATE"), {"i": item_id}
            )
        item = _pending_item(conn, item_id, program_id)
        operator = find_operator(conn, signed.operator, program_id)
        if operator is None or operator.status != "active" or operator.key_id is None:
            raise ReversalError(
                f"decision refused: {signed.operator!r} is not an active operator of program {program_id} with a key"
            )
        if signed.amount_minor != item.pending_minor:
            raise ReversalError(
                f"item {item_id}: the decision was signed for {format_minor(signed.amount_minor, item.currency)} "
                f"but {format_minor(item.pending_minor, item.currency)} is pending now; sign it again"
            )
        public_key = conn.execute(
            text("SELECT public_key FROM operator_key WHERE program_id = :p AND key_id = :k"),
            {"p": program_id, "k": operator.key_id},
        ).scalar_one()
        fields = decision_fields(item, decision, item.pending_minor, reason, operator.operator_id, operator.key_id, at)
        if not verify(public_key, DECISION, fields, signed.signature):
            raise ReversalError(
                f"decision refused: the signature is not {operator.operator_id}'s (current key "
                f"{operator.key_id[:16]}) for this decision on item {item_id}"
            )
        decision_pk = conn.execute(
            text(
                "INSERT INTO reversal_decision (program_id, payout_item_id, affiliate_id, currency, amount_minor, "
                "decision, decided_by, reason, decided_at, operator_id, key_id, signature) "
                "VALUES (:p, :i, :a, :c, :m, :d, :by, :r, :at, :by, :k, :sig) RETURNING decision_pk"
            ).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True))),
            {
                "p": item.program_id,
                "i": item_id,
                "a": item.affiliate_id,
                "c": item.currency,
                "m": item.pending_minor,
                "d": decision,
                "by": operator.operator_id,
                "r": reason,
                "at": at,
                "k": operator.key_id,
                "sig": signed.signature,
            },
        ).scalar_one()
        carried_into = _destination(conn, item) if decision == OWE_AGAIN else "closed (written off)"
    return Decision(int(decision_pk), item, decision, item.pending_minor, operator.operator_id, reason, carried_into)


def _destination(conn: sa.Connection, item: ReversedItem) -> str:
    """Where owed-again money will be carried in: the next batch built after the reversed month's."""
    draft = conn.execute(
        text(
            "SELECT period FROM payout_batch WHERE program_id = :p AND period > :period "
            "AND status = 'draft' ORDER BY period LIMIT 1"
        ),
        {"p": item.program_id, "period": item.period},
    ).scalar_one_or_none()
    if draft is not None:
        return (
            f"the draft batch of {period_key(as_date(draft))} once it is rebuilt (materialize payout_manifest "
            "for it), else the next batch built"
        )
    return "the next batch built (the next month's payout_manifest)"
