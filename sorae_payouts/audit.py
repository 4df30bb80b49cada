"""Ledger invariants, checked after the fact (the Dagster asset checks call these).

Each function returns an `AuditResult` with the offending rows, so a failed check shows operators
exactly what drifted. They re-derive their figures from the raw tables rather than trusting the
columns they verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from sorae_payouts.finalize import CHECKSUM_SQL
from sorae_payouts.ledger.sql import text
from sorae_payouts.manifest import batch_id_for
from sorae_payouts.money import format_minor


@dataclass
class AuditResult:
    passed: bool
    summary: str
    rows: list[dict] = field(default_factory=list)  # per currency, or the offending rows


def money_is_conserved(conn: sa.Connection, period: date) -> AuditResult:
    """Per currency: sum of all items (payable and carried forward) == finalized commissions of the
    period + in-period adjustments + clawbacks booked in it + balances carried in from the previous batch
    + unpaid items of earlier batches closed into this one
    + reversed amounts owed again (operators' decisions carried into this batch)."""
    batch_id = batch_id_for(period)
    rows = conn.execute(text("""
        SELECT currency, SUM(items) AS items, SUM(expected) AS expected FROM (
            SELECT currency, SUM(amount_minor) AS items, 0 AS expected
            FROM payout_item WHERE batch_id = :batch_id GROUP BY currency
            UNION ALL
            SELECT currency, 0, gross_minor + in_period_adjustments_minor + clawbacks_minor
            FROM period_snapshot WHERE period = :period
            UNION ALL
            SELECT i.currency, 0, SUM(i.amount_minor) FROM payout_item i
            WHERE i.status = 'carried_forward' AND i.carry_reason IS NOT NULL AND i.batch_id = (
                SELECT batch_id FROM payout_batch WHERE period < :period ORDER BY period DESC LIMIT 1)
            GROUP BY i.currency
            UNION ALL
            SELECT c.currency, 0, SUM(c.amount_minor) FROM payout_item_carry c
            WHERE c.into_batch_id = :batch_id GROUP BY c.currency
            UNION ALL
            SELECT d.currency, 0, SUM(d.amount_minor) FROM reversal_decision d
            WHERE d.decision = 'owe_again' AND d.decision_pk IN
                  (SELECT o.decision_pk FROM owed_again_carry o WHERE o.batch_id = :batch_id)
            GROUP BY d.currency
        ) parts GROUP BY currency ORDER BY currency"""), {"batch_id": batch_id, "period": period}).all()
    table = [{"currency": c, "items_minor": int(i), "expected_minor": int(e), "difference_minor": int(i) - int(e)}
             for c, i, e in rows]
    drift = [r for r in table if r["difference_minor"] != 0]
    if drift:
        return AuditResult(False, "money is not conserved in " + ", ".join(r["currency"] for r in drift), table)
    return AuditResult(True, f"conserved in {len(table)} currencies", table)


def finalized_rows_unchanged(conn: sa.Connection, period: date) -> AuditResult:
    """The period's commissions and adjustments still match the snapshot taken at finalization
    (count, gross, checksum, adjustments per currency), and the manifest's per-affiliate earned
    amounts still match a fresh aggregation of those rows."""
    snapshot = conn.execute(text(f"""
        SELECT s.currency, s.commission_count, s.gross_minor, s.checksum, s.in_period_adjustments_minor,
               s.clawbacks_minor, c.cnt, c.gross, c.chk, a.adj, a.claw
        FROM period_snapshot s
        LEFT JOIN (SELECT currency, COUNT(*) AS cnt, SUM(amount_minor) AS gross, {CHECKSUM_SQL} AS chk
                   FROM commission WHERE period = :period GROUP BY currency) c ON c.currency = s.currency
        LEFT JOIN (SELECT currency, SUM(CASE WHEN kind = 'in_period' THEN amount_minor ELSE 0 END) AS adj,
                          SUM(CASE WHEN kind = 'clawback' THEN amount_minor ELSE 0 END) AS claw
                   FROM commission_adjustment WHERE booked_period = :period GROUP BY currency) a
               ON a.currency = s.currency
        WHERE s.period = :period ORDER BY s.currency"""), {"period": period}).all()
    drift = []
    for r in snapshot:
        stored, now = tuple(int(v) for v in r[1:6]), tuple(int(v or 0) for v in r[6:11])
        if stored != now:
            drift.append({"currency": r[0], "snapshot": str(stored), "now": str(now)})
    extra = conn.execute(text(
        "SELECT COUNT(*) FROM commission WHERE period = :period AND currency NOT IN "
        "(SELECT currency FROM period_snapshot WHERE period = :period)"), {"period": period}).scalar_one()
    if extra:
        drift.append({"currency": "*", "snapshot": "0", "now": f"{extra} rows in currencies not finalized"})
    drift += _item_drift(conn, period)
    if drift:
        return AuditResult(False, f"{len(drift)} finalized aggregates changed since finalization", drift)
    return AuditResult(True, f"{sum(int(r[1]) for r in snapshot)} finalized commissions unchanged", [])


def _item_drift(conn: sa.Connection, period: date) -> list[dict]:
    rows = conn.execute(text("""
        SELECT t.affiliate_id, t.currency, t.earned, i.period_amount_minor FROM (
            SELECT affiliate_id, currency, SUM(amount_minor) AS earned FROM (
                SELECT affiliate_id, currency, amount_minor FROM commission WHERE period = :period
                UNION ALL
                SELECT affiliate_id, currency, amount_minor FROM commission_adjustment WHERE booked_period = :period
            ) u GROUP BY affiliate_id, currency
        ) t LEFT JOIN payout_item i
          ON i.batch_id = :batch_id AND i.affiliate_id = t.affiliate_id AND i.currency = t.currency
        WHERE EXISTS (SELECT 1 FROM payout_batch WHERE batch_id = :batch_id)
          AND (i.period_amount_minor IS NULL OR i.period_amount_minor <> t.earned)
        LIMIT 100"""), {"period": period, "batch_id": batch_id_for(period)}).all()
    return [{"currency": c, "snapshot": f"{a}: item {i}", "now": f"{a}: rows {e}"} for a, c, e, i in rows]


def one_item_per_affiliate_currency(conn: sa.Connection, period: date) -> AuditResult:
    """No affiliate has two payout items for one currency in the period's batch."""
    rows = conn.execute(text(
        "SELECT affiliate_id, currency, COUNT(*) FROM payout_item WHERE batch_id = :batch_id "
        "GROUP BY affiliate_id, currency HAVING COUNT(*) > 1 ORDER BY affiliate_id LIMIT 100"),
        {"batch_id": batch_id_for(period)}).all()
    if rows:
        return AuditResult(False, f"{len(rows)} affiliate/currency pairs have several items",
                           [{"affiliate_id": a, "currency": c, "items": int(n)} for a, c, n in rows])
    return AuditResult(True, "one item per affiliate and currency", [])


def reversals_are_accounted(conn: sa.Connection, period: date) -> AuditResult:
    """After execution, per currency of the period's batch:
    - posted - reversed = net paid: the posted items' amounts minus their reversed amounts equal the
      posted attempts' transfer amounts minus the last reversal state Stripe reported for them;
    - every reversed cent is pending, owed again or written off (decisions never exceed what was
      reversed), and every owed-again cent is carried by at most one batch with its full amount."""
    batch_id = batch_id_for(period)
    rows = conn.execute(text("""
        SELECT i.currency,
               SUM(CASE WHEN i.status IN ('posted', 'partially_reversed', 'reversed') THEN i.amount_minor ELSE 0 END),
               SUM(i.reversed_minor),
               SUM(COALESCE(a.amount_minor, 0) - COALESCE((SELECT e.amount_reversed_minor FROM transfer_status_event e
                   WHERE e.attempt_pk = a.attempt_pk ORDER BY e.event_pk DESC LIMIT 1), 0)),
               SUM(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                   WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'owe_again'), 0)),
               SUM(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                   WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'write_off'), 0))
        FROM payout_item i LEFT JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id AND a.state = 'posted'
        WHERE i.batch_id = :b GROUP BY i.currency ORDER BY i.currency"""), {"b": batch_id}).all()
    table, drift = [], []
    for currency, posted, reversed_, net_paid, owed, written in rows:
        posted, reversed_, net_paid, owed, written = (int(v or 0) for v in (posted, reversed_, net_paid, owed, written))
        row = {"currency": currency, "posted_minor": posted, "reversed_minor": reversed_, "net_paid_minor": net_paid,
               "reversal_pending_minor": reversed_ - owed - written, "owed_again_minor": owed,
               "written_off_minor": written}
        table.append(row)
        if posted - reversed_ != net_paid:
            drift.append(f"{currency}: posted {posted} - reversed {reversed_} != net paid {net_paid}")
        if row["reversal_pending_minor"] < 0:
            drift.append(f"{currency}: decisions exceed the reversed amount by {-row['reversal_pending_minor']}")
    carried = conn.execute(text("""
        SELECT d.decision_pk FROM reversal_decision d
        JOIN payout_item i ON i.payout_item_id = d.payout_item_id AND i.batch_id = :b
        JOIN owed_again_carry o ON o.decision_pk = d.decision_pk
        WHERE o.amount_minor <> d.amount_minor OR d.decision <> 'owe_again'"""), {"b": batch_id}).scalars().all()
    drift += [f"decision {pk}: carried amount differs from the decision" for pk in carried]
    if drift:
        return AuditResult(False, "; ".join(drift), table)
    pending = ", ".join(format_minor(r["reversal_pending_minor"], r["currency"]) for r in table
                        if r["reversal_pending_minor"])
    return AuditResult(True, f"reversals accounted in {len(table)} currencies"
                       + (f"; {pending} reversed await a decision" if pending else ""), table)
