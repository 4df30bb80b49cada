"""Negative balances: visible (amount and age) and, under the recovery policy, recovered by reversal.

An affiliate whose clawbacks exceed their earnings ends a month with a negative item
(`carried_forward`, reason `negative_balance`) that carries into the next month. The batch policy
(`PayoutPolicy.negative_balance`, frozen into the batch at build time) says what happens next:
- `carry` (default): it keeps carrying and is deducted from later earnings;
- `recover_by_reversal`: once the batch is approved, `recover_negative_balances` reverses that
  affiliate's most recent posted transfers (same program and currency) up to the negative amount, through
  `POST /v1/transfers/{id}/reversals`. Each reversal is a `transfer_reversal_request` whose
  idempotency key (ledger, program, period, affiliate, currency, transfer, sequence) is committed
  before Stripe is called and whose outcome is committed right after; an unknown outcome is re-sent
  with the same key on the next run. A recovered amount is reversed money whose meaning is already
  decided by the policy: the reversal is recorded on the reversed item like any other
  (`record_reversal`) together with an `owe_again` decision by `policy:recover_by_reversal`, so it
  flows into the next batch as carried-in and cancels the negative balance there.
A program's reversals go through its own paying account (its gateway), keyed by that account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.aftercare.reversals import OWE_AGAIN, ReversalState, record_reversal
from sorae_payouts.core.periods import period_key
from sorae_payouts.execution.identity import PaymentIdentity, reversal_idempotency_key
from sorae_payouts.ledger.sql import as_date, text
from sorae_payouts.month_end.batches import BatchError, load_batch
from sorae_payouts.month_end.manifest import NEGATIVE_BALANCE_CARRY, NEGATIVE_BALANCE_RECOVER
from sorae_payouts.registry.paying_accounts import require_program_gateway
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, get_program
from sorae_payouts.stripe_gateway import Disposition, StripeGateway

RECOVERY_DECIDER = "policy:recover_by_reversal"
PURPOSE = "negative_balance_recovery"


def negative_balances(conn: sa.Connection, batch_id: str) -> list[dict]:
    """Affiliates in negative balance in the batch: amount and age (consecutive months carried negative,
    this month included)."""
    rows = conn.execute(
        text(
            "SELECT i.affiliate_id, i.currency, i.amount_minor, b.period FROM payout_item i "
            "JOIN payout_batch b ON b.batch_id = i.batch_id WHERE i.batch_id = :b AND i.carry_reason = "
            "'negative_balance' "
            "ORDER BY i.amount_minor, i.affiliate_id"
        ),
        {"b": batch_id},
    ).all()
    if not rows:
        return []
    period = as_date(rows[0].period)
    program = "(SELECT x.program_id FROM payout_batch x WHERE x.batch_id = :b)"  # months of this program only
    periods = [
        as_date(p)
        for p in conn.execute(
            text(
                f"SELECT period FROM payout_batch WHERE program_id = {program} AND period <= :period ORDER BY period "
                "DESC"
            ),
            {"period": period, "b": batch_id},
        ).scalars()
    ]
    negative = {
        (a, c, as_date(p))
        for a, c, p in conn.execute(
            text(
                "SELECT i.affiliate_id, i.currency, b.period FROM payout_item i JOIN payout_batch b ON b.batch_id = "
                "i.batch_id "
                f"WHERE b.program_id = {program} AND i.carry_reason = 'negative_balance' AND b.period <= :period "
                "AND i.affiliate_id IN "
                "(SELECT affiliate_id FROM payout_item WHERE batch_id = :b AND carry_reason = 'negative_balance')"
            ),
            {"period": period, "b": batch_id},
        )
    }
    result = []
    for affiliate, currency, amount, _ in rows:
        age = 0
        for p in periods:
            if (affiliate, currency, p) not in negative:
                break
            age += 1
        result.append(
            {
                "affiliate_id": affiliate,
                "currency": currency,
                "amount_minor": int(amount),
                "months_carried": age,
                "since": period_key(periods[age - 1]),
            }
        )
    return result


@dataclass
class RecoveryReport:
    batch_id: str
    policy: str
    requested: list[dict] = field(default_factory=list)
    recovered_minor: dict[str, int] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)
    unknown: int = 0

    def as_json(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "policy": self.policy,
            "requested": self.requested,
            "recovered_minor": self.recovered_minor,
            "failed": self.failed,
            "unknown": self.unknown,
        }


_IN_FLIGHT = """
SELECT COALESCE(SUM(r.amount_minor), 0) FROM transfer_reversal_request r
WHERE r.program_id = :p AND r.affiliate_id = :a AND r.currency = :c AND r.purpose = :purpose
  AND (r.state = 'processing' OR
      (r.state = 'succeeded' AND NOT EXISTS (
          SELECT 1 FROM reversal_decision d JOIN owed_again_carry o ON o.decision_pk = d.decision_pk
          JOIN payout_batch ob ON ob.batch_id = o.batch_id
          WHERE d.reversal_request_pk = r.request_pk AND ob.period <= :period)))
"""
_CANDIDATES = """
SELECT a.attempt_pk, a.payout_item_id, a.stripe_transfer_id, a.amount_minor - i.reversed_minor -
       COALESCE((SELECT SUM(r.amount_minor) FROM transfer_reversal_request r
                 WHERE r.stripe_transfer_id = a.stripe_transfer_id AND r.state = 'processing'), 0) AS reversible
FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id
JOIN payout_batch b ON b.batch_id = i.batch_id
WHERE a.state = 'posted' AND b.program_id = :p AND i.affiliate_id = :a AND i.currency = :c AND b.period <= :period
ORDER BY b.period DESC, a.attempt_pk DESC
"""


def recover_negative_balances(
    engine: sa.Engine, gateway: StripeGateway, period: date, *, program_id: str = DEFAULT_PROGRAM, now: datetime
) -> RecoveryReport:
    """Under the batch's `recover_by_reversal` policy, reverse the program's transfers up to each
    negative balance of its batch, through `gateway` (the program's paying account's)."""
    with engine.connect() as conn:
        program = get_program(conn, program_id)
        batch = load_batch(conn, period, program_id=program_id)
    policy = batch.policy.get("negative_balance", NEGATIVE_BALANCE_CARRY)
    report = RecoveryReport(batch.batch_id, policy)
    if policy != NEGATIVE_BALANCE_RECOVER:
        return report
    if batch.status == "draft":
        raise BatchError(f"batch {batch.batch_id} is a draft: negative balances are recovered once it is approved")
    require_program_gateway(program, gateway)
    # The live-money rule before anything is stored: a refused run leaves no request to resume by mistake.
    # (Every reversal request also passes the gateway's one live-money gate.)
    gateway.require_live_payouts_allowed()
    identity = gateway.paying_account()  # keys name the paying Stripe account, never a ledger-local id
    _finish_open_requests(engine, gateway, period, program_id, report, now)
    with engine.connect() as conn:
        debts = negative_balances(conn, batch.batch_id)
    for debt in debts:
        affiliate, currency = debt["affiliate_id"], debt["currency"]
        params = {"p": program_id, "a": affiliate, "c": currency, "period": period, "purpose": PURPOSE}
        with engine.connect() as conn:
            remaining = -debt["amount_minor"] - int(conn.execute(text(_IN_FLIGHT), params).scalar_one())
            candidates = conn.execute(text(_CANDIDATES), params).all()
        for _attempt_pk, item_id, transfer_id, reversible in candidates:
            if remaining <= 0:
                break
            amount = min(remaining, int(reversible))
            if amount <= 0:
                continue
            request = _store_request(
                engine,
                identity,
                period,
                affiliate,
                currency,
                int(item_id),
                transfer_id,
                amount,
                now,
                program_id=program_id,
                debt_minor=-debt["amount_minor"],
            )
            if request is None:  # another recovery of this debt got there first: nothing left to ask
                break
            amount = request["amount_minor"]
            if not _send(engine, gateway, request, report, now):
                break  # failed or unknown: never reverse another transfer of this affiliate on top of it
            remaining -= amount
    return report


def _store_request(
    engine,
    identity,
    period,
    affiliate,
    currency,
    item_id,
    transfer_id,
    amount,
    now,
    *,
    program_id: str = DEFAULT_PROGRAM,
    debt_minor: int,
) -> dict | None:
    """Commit the request (and its key) before Stripe is called. Two recoveries of one debt at once queue
    on the debt's item (PostgreSQL: FOR UPDATE; SQLite serializes writers) and the later one asks only what
    the earlier left, or nothing (None); the database refuses more than the debt either way (0015)."""
    with engine.begin() as conn:
        params = {"p": program_id, "a": affiliate, "c": currency, "period": period, "purpose": PURPOSE}
        if conn.dialect.name == "postgresql":
            conn.execute(
                text(
                    "SELECT i.payout_item_id FROM payout_item i JOIN payout_batch b ON b.batch_id = i.batch_id "
                    "WHERE b.program_id = :p AND b.period = :period AND i.affiliate_id = :a AND i.currency = :c "
                    "AND i.carry_reason = 'negative_balance' FOR UPDATE OF i"
                ),
                params,
            )
        amount = min(amount, debt_minor - int(conn.execute(text(_IN_FLIGHT), params).scalar_one()))
        if amount <= 0:
            return None
        sequence = int(
            conn.execute(
                text(
                    "SELECT COALESCE(MAX(sequence), 0) + 1 FROM transfer_reversal_request WHERE program_id = :p "
                    "AND period = :period AND affiliate_id = :a AND currency = :c"
                ),
                {"p": program_id, "period": period, "a": affiliate, "c": currency},
            ).scalar_one()
        )
        key = reversal_idempotency_key(
            identity, PaymentIdentity(program_id, period_key(period), affiliate, currency), transfer_id, sequence
        )
        request_pk = conn.execute(
            text(
                "INSERT INTO transfer_reversal_request (program_id, purpose, period, affiliate_id, currency, "
                "payout_item_id, "
                "stripe_transfer_id, sequence, amount_minor, idempotency_key, state, created_at, updated_at) VALUES "
                "(:p, :purpose, :period, :a, :c, :i, :t, :s, :m, :k, 'processing', :now, :now) RETURNING request_pk"
            ),
            {
                "p": program_id,
                "purpose": PURPOSE,
                "period": period,
                "a": affiliate,
                "c": currency,
                "i": item_id,
                "t": transfer_id,
                "s": sequence,
                "m": amount,
                "k": key,
                "now": now,
            },
        ).scalar_one()
    return {
        "request_pk": int(request_pk),
        "program_id": program_id,
        "period": period,
        "affiliate_id": affiliate,
        "currency": currency,
        "payout_item_id": item_id,
        "stripe_transfer_id": transfer_id,
        "sequence": sequence,
        "amount_minor": amount,
        "idempotency_key": key,
        "paying_account": identity,
    }


def reversal_metadata(request: dict) -> dict[str, str]:
    """What the reversal carries in Stripe: derived from the stored request only, so a re-send after a
    crash sends the very same parameters with the same key (Stripe refuses a key reused otherwise)."""
    return {
        "sorae_paying_account": request["paying_account"],
        "purpose": PURPOSE,
        "program_id": request["program_id"],
        "period": period_key(request["period"]),
        "affiliate_id": request["affiliate_id"],
        "request_sequence": str(request["sequence"]),
    }


def _send(engine, gateway: StripeGateway, request: dict, report: RecoveryReport, now: datetime) -> bool:
    outcome = gateway.reverse_transfer(
        request["stripe_transfer_id"], request["amount_minor"], request["idempotency_key"], reversal_metadata(request)
    )
    summary = {k: request[k] for k in ("affiliate_id", "currency", "stripe_transfer_id", "amount_minor", "sequence")}
    if outcome.disposition is Disposition.POSTED:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE transfer_reversal_request SET state = 'succeeded', stripe_reversal_id = :r, "
                    "updated_at = :now WHERE request_pk = :pk AND state = 'processing'"
                ),
                {"r": outcome.reversal_id, "now": now, "pk": request["request_pk"]},
            )
        _book(engine, gateway, request["request_pk"], now)
        report.requested.append({**summary, "reversal_id": outcome.reversal_id})
        report.recovered_minor[request["currency"]] = (
            report.recovered_minor.get(request["currency"], 0) + request["amount_minor"]
        )
        return True
    if outcome.disposition in (Disposition.FAILED, Disposition.FAILED_RETRYABLE):
        error = outcome.error
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE transfer_reversal_request SET state = 'failed', error_code = :c, error_message = :m, "
                    "updated_at = :now WHERE request_pk = :pk AND state = 'processing'"
                ),
                {
                    "c": (error.code if error else None) or "unknown_error",
                    "m": error.message if error else None,
                    "now": now,
                    "pk": request["request_pk"],
                },
            )
        report.failed.append({**summary, "error_code": (error.code if error else None) or "unknown_error"})
        return False
    report.unknown += 1  # 429/409/5xx/network: stays processing, the next run re-sends the same key
    return False


def _book(engine, gateway: StripeGateway, request_pk: int, now: datetime) -> None:
    """Record the reversed transfer's new state on its item and the policy's owe-again decision, once."""
    with engine.connect() as conn:
        r = conn.execute(
            text(
                "SELECT r.stripe_transfer_id, r.payout_item_id, r.amount_minor, r.affiliate_id, r.currency, r.period, "
                "r.stripe_reversal_id, a.attempt_pk, r.program_id FROM transfer_reversal_request r JOIN "
                "transfer_attempt a "
                "ON a.stripe_transfer_id = r.stripe_transfer_id AND a.state = 'posted' WHERE r.request_pk = :pk"
            ),
            {"pk": request_pk},
        ).one()
    transfer = gateway.transfer(r.stripe_transfer_id)
    with engine.begin() as conn:
        record_reversal(
            conn,
            ReversalState(
                int(r.attempt_pk),
                int(r.payout_item_id),
                r.stripe_transfer_id,
                transfer.reversed,
                transfer.amount_reversed,
            ),
            now,
        )
        pending = int(
            conn.execute(
                text(
                    "SELECT i.reversed_minor - COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d "
                    "WHERE d.payout_item_id = i.payout_item_id), 0) FROM payout_item i WHERE i.payout_item_id = :i"
                ),
                {"i": r.payout_item_id},
            ).scalar_one()
        )
        amount = min(int(r.amount_minor), pending)  # an operator may already have decided part of it
        if amount > 0:
            conn.execute(
                text(
                    "INSERT INTO reversal_decision (program_id, payout_item_id, affiliate_id, currency, amount_minor, "
                    "decision, decided_by, reason, reversal_request_pk, decided_at) VALUES (:p, :i, :a, :c, :m, :d, "
                    ":by, "
                    ":reason, :pk, :now)"
                ),
                {
                    "p": r.program_id,
                    "i": r.payout_item_id,
                    "a": r.affiliate_id,
                    "c": r.currency,
                    "m": amount,
                    "d": OWE_AGAIN,
                    "by": RECOVERY_DECIDER,
                    "pk": request_pk,
                    "now": now,
                    "reason": f"negative balance of {period_key(as_date(r.period))} recovered by reversal "
                    f"{r.stripe_reversal_id}",
                },
            )


def _finish_open_requests(
    engine, gateway: StripeGateway, period: date, program_id: str, report: RecoveryReport, now: datetime
) -> None:
    """Requests left `processing` by a crash or an unknown answer: re-sent with the SAME key (Stripe
    replays the first answer); succeeded requests whose booking did not commit: booked now."""
    identity = gateway.paying_account()
    with engine.connect() as conn:
        open_requests = (
            conn.execute(
                text(
                    "SELECT request_pk, program_id, period, affiliate_id, currency, payout_item_id, "
                    "stripe_transfer_id, "
                    "sequence, amount_minor, idempotency_key FROM transfer_reversal_request WHERE state = 'processing' "
                    "AND program_id = :p AND period = :period ORDER BY request_pk"
                ),
                {"p": program_id, "period": period},
            )
            .mappings()
            .all()
        )
        unbooked = (
            conn.execute(
                text(
                    "SELECT r.request_pk FROM transfer_reversal_request r WHERE r.state = 'succeeded' AND "
                    "r.program_id = :p "
                    "AND r.period = :period "
                    "AND NOT EXISTS (SELECT 1 FROM reversal_decision d WHERE d.reversal_request_pk = r.request_pk)"
                ),
                {"p": program_id, "period": period},
            )
            .scalars()
            .all()
        )
    for request_pk in unbooked:
        _book(engine, gateway, int(request_pk), now)
    for row in open_requests:
        _send(engine, gateway, {**row, "period": as_date(row["period"]), "paying_account": identity}, report, now)
