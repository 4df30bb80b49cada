"""Ledger invariants, checked after the fact (the Dagster asset checks call these).

Each function returns an `AuditResult` with the offending rows, so a failed check shows operators
exactly what drifted. They re-derive their figures from the raw tables rather than trusting the
columns they verify.

Programs: each check takes a set of programs (`check(conn, period, program_ids)`: one result per
program, in one or two statements whatever the number of programs); one program is a set of one. A
program's result only ever reads its own rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from sorae_payouts.core.money import format_minor
from sorae_payouts.ledger.sql import allow_large_sorts, set_text, values_cte
from sorae_payouts.month_end.finalize import CHECKSUM_SQL
from sorae_payouts.month_end.program_sets import per_chunk, unique_ids

ROWS_SHOWN = 100  # offending rows reported per program


@dataclass
class AuditResult:
    passed: bool
    summary: str
    rows: list[dict] = field(default_factory=list)  # per currency, or the offending rows


def _batches(conn: sa.Connection, period: date, ids: list[str]) -> tuple[str, dict]:
    """WITH-clause entries `nb` (each program's batch of the month) and `prev` (its previous batch), as
    bound values: the planner then knows there are a thousand of them even when statistics have not seen
    the batches just built (it took them for a handful and probed a million items one by one)."""
    params = {"period": period, "program_ids": ids}
    current = conn.execute(
        set_text(
            "SELECT program_id, batch_id FROM payout_batch WHERE period = :period "
            "AND program_id IN :program_ids ORDER BY program_id"
        ),
        params,
    ).all()
    previous = conn.execute(
        set_text(
            "SELECT b.program_id, b.batch_id FROM payout_batch b WHERE b.program_id IN :program_ids AND b.period = "
            "(SELECT MAX(p.period) FROM payout_batch p WHERE p.program_id = b.program_id AND p.period < :period) "
            "ORDER BY b.program_id"
        ),
        params,
    ).all()
    nb, nb_params = values_cte("nb", ("program_id", "batch_id"), current, "nb", types=("TEXT", "TEXT"))
    prev, prev_params = values_cte("prev", ("program_id", "batch_id"), previous, "prev", types=("TEXT", "TEXT"))
    return f"{nb}, {prev}", {**params, **nb_params, **prev_params}


_CONSERVED = """
WITH {batches}
SELECT program_id, currency, SUM(items) AS items, SUM(expected) AS expected FROM (
    SELECT nb.program_id, i.currency, SUM(i.amount_minor) AS items, 0 AS expected
    FROM payout_item i JOIN nb ON nb.batch_id = i.batch_id GROUP BY nb.program_id, i.currency
    UNION ALL
    SELECT program_id, currency, 0, gross_minor + in_period_adjustments_minor + clawbacks_minor
    FROM period_snapshot WHERE period = :period AND program_id IN :program_ids
    UNION ALL
    SELECT prev.program_id, i.currency, 0, SUM(i.amount_minor)
    FROM payout_item i JOIN prev ON prev.batch_id = i.batch_id
    WHERE i.status = 'carried_forward' AND i.carry_reason IS NOT NULL GROUP BY prev.program_id, i.currency
    UNION ALL
    SELECT nb.program_id, c.currency, 0, SUM(c.amount_minor) FROM payout_item_carry c
    JOIN nb ON nb.batch_id = c.into_batch_id GROUP BY nb.program_id, c.currency
    UNION ALL
    SELECT nb.program_id, d.currency, 0, SUM(d.amount_minor) FROM owed_again_carry o
    JOIN reversal_decision d ON d.decision_pk = o.decision_pk JOIN nb ON nb.batch_id = o.batch_id
    WHERE d.decision = 'owe_again' GROUP BY nb.program_id, d.currency
) parts GROUP BY program_id, currency ORDER BY program_id, currency
"""


@per_chunk
def money_is_conserved(conn: sa.Connection, period: date, program_ids: Iterable[str]) -> dict[str, AuditResult]:
    """Per program and currency: sum of all items of the program's batch (payable and carried forward)
    == its finalized commissions of the period + in-period adjustments + clawbacks booked in it
    + balances carried in from its previous batch + unpaid items of its earlier batches closed into
    this one + reversed amounts owed again (operators' decisions carried into this batch)."""
    allow_large_sorts(conn)
    ids = unique_ids(program_ids)
    tables: dict[str, list[dict]] = {p: [] for p in ids}
    batches, params = _batches(conn, period, ids)
    for program_id, c, i, e in conn.execute(set_text(_CONSERVED.format(batches=batches)), params):
        tables[program_id].append(
            {"currency": c, "items_minor": int(i), "expected_minor": int(e), "difference_minor": int(i) - int(e)}
        )
    results = {}
    for program_id, table in tables.items():
        drift = [r for r in table if r["difference_minor"] != 0]
        results[program_id] = (
            AuditResult(False, "money is not conserved in " + ", ".join(r["currency"] for r in drift), table)
            if drift
            else AuditResult(True, f"conserved in {len(table)} currencies", table)
        )
    return results


# Snapshot vs a fresh aggregation, per program and currency; a row with currency NULL counts the
# program's commissions in currencies that were not finalized.
_SNAPSHOT_DRIFT = f"""
WITH c AS (SELECT program_id, currency, COUNT(*) AS cnt, SUM(amount_minor) AS gross, {CHECKSUM_SQL} AS chk
           FROM commission WHERE period = :period AND program_id IN :program_ids GROUP BY program_id, currency),
a AS (SELECT program_id, currency, SUM(CASE WHEN kind = 'in_period' THEN amount_minor ELSE 0 END) AS adj,
             SUM(CASE WHEN kind = 'clawback' THEN amount_minor ELSE 0 END) AS claw
      FROM commission_adjustment WHERE booked_period = :period AND program_id IN :program_ids
      GROUP BY program_id, currency),
s AS (SELECT program_id, currency, commission_count, gross_minor, checksum, in_period_adjustments_minor,
             clawbacks_minor FROM period_snapshot WHERE period = :period AND program_id IN :program_ids)
SELECT s.program_id, s.currency, s.commission_count, s.gross_minor, s.checksum, s.in_period_adjustments_minor,
       s.clawbacks_minor, c.cnt, c.gross, c.chk, a.adj, a.claw
FROM s LEFT JOIN c ON c.program_id = s.program_id AND c.currency = s.currency
       LEFT JOIN a ON a.program_id = s.program_id AND a.currency = s.currency
UNION ALL
SELECT c.program_id, NULL, 0, 0, 0, 0, 0, c.cnt, 0, 0, 0, 0 FROM c
WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.program_id = c.program_id AND s.currency = c.currency)
"""

# Each item's earned amount vs a fresh aggregation of the program's rows (only where the batch exists):
# commissions aggregated in index order, the month's adjustments (few) joined to them.
_ITEM_DRIFT = """
WITH {batches},
adj AS (
    SELECT program_id, affiliate_id, currency, SUM(amount_minor) AS amount FROM commission_adjustment
    WHERE booked_period = :period AND program_id IN :program_ids GROUP BY program_id, affiliate_id, currency
),
month AS (
    SELECT program_id, affiliate_id, currency, SUM(amount_minor) AS amount FROM commission
    WHERE period = :period AND program_id IN :program_ids GROUP BY program_id, affiliate_id, currency
),
t AS (
    SELECT m.program_id, m.affiliate_id, m.currency, m.amount + COALESCE(a.amount, 0) AS earned
    FROM month m LEFT JOIN adj a ON a.program_id = m.program_id AND a.affiliate_id = m.affiliate_id
                                AND a.currency = m.currency
    UNION ALL
    SELECT a.program_id, a.affiliate_id, a.currency, a.amount FROM adj a
    WHERE NOT EXISTS (SELECT 1 FROM commission c WHERE c.program_id = a.program_id AND c.affiliate_id = a.affiliate_id
                      AND c.period = :period AND c.currency = a.currency)
)
SELECT program_id, affiliate_id, currency, earned, item_amount FROM (
    SELECT t.program_id, t.affiliate_id, t.currency, t.earned, i.period_amount_minor AS item_amount,
           ROW_NUMBER() OVER (PARTITION BY t.program_id ORDER BY t.affiliate_id, t.currency) AS n
    FROM t JOIN nb ON nb.program_id = t.program_id
    LEFT JOIN payout_item i ON i.batch_id = nb.batch_id AND i.affiliate_id = t.affiliate_id AND i.currency = t.currency
    WHERE i.period_amount_minor IS NULL OR i.period_amount_minor <> t.earned
) d WHERE n <= :shown
"""


@per_chunk
def finalized_rows_unchanged(conn: sa.Connection, period: date, program_ids: Iterable[str]) -> dict[str, AuditResult]:
    """Per program: the period's commissions and adjustments still match the snapshot taken at
    finalization (count, gross, checksum, adjustments per currency), and the manifest's per-affiliate
    earned amounts still match a fresh aggregation of those rows."""
    allow_large_sorts(conn)
    ids = unique_ids(program_ids)
    params = {"period": period, "program_ids": ids}
    drift: dict[str, list[dict]] = {p: [] for p in ids}
    counted = dict.fromkeys(ids, 0)
    for r in conn.execute(set_text(_SNAPSHOT_DRIFT), params):
        program_id, currency = r[0], r[1]
        if currency is None:
            drift[program_id].append(
                {"currency": "*", "snapshot": "0", "now": f"{int(r[7])} rows in currencies not finalized"}
            )
            continue
        counted[program_id] += int(r[2])
        stored, now = tuple(int(v) for v in r[2:7]), tuple(int(v or 0) for v in r[7:12])
        if stored != now:
            drift[program_id].append({"currency": currency, "snapshot": str(stored), "now": str(now)})
    batches, batch_params = _batches(conn, period, ids)
    for program_id, a, c, earned, item in conn.execute(
        set_text(_ITEM_DRIFT.format(batches=batches)), {**batch_params, "shown": ROWS_SHOWN}
    ):
        drift[program_id].append({"currency": c, "snapshot": f"{a}: item {item}", "now": f"{a}: rows {earned}"})
    return {
        p: (
            AuditResult(False, f"{len(rows)} finalized aggregates changed since finalization", rows)
            if rows
            else AuditResult(True, f"{counted[p]} finalized commissions unchanged", [])
        )
        for p, rows in drift.items()
    }


# Grouped by batch, affiliate and currency: the order of the unique index, so no hash of a million groups.
_SEVERAL_ITEMS = """
WITH {batches}
SELECT program_id, affiliate_id, currency, items FROM (
    SELECT nb.program_id, d.affiliate_id, d.currency, d.items,
           ROW_NUMBER() OVER (PARTITION BY nb.program_id ORDER BY d.affiliate_id, d.currency) AS n
    FROM (SELECT i.batch_id, i.affiliate_id, i.currency, COUNT(*) AS items FROM payout_item i
          WHERE i.batch_id IN (SELECT batch_id FROM nb)
          GROUP BY i.batch_id, i.affiliate_id, i.currency HAVING COUNT(*) > 1) d
    JOIN nb ON nb.batch_id = d.batch_id
) x WHERE n <= :shown
"""


@per_chunk
def one_item_per_affiliate_currency(
    conn: sa.Connection, period: date, program_ids: Iterable[str]
) -> dict[str, AuditResult]:
    """No affiliate has two payout items for one currency in its program's batch of the period."""
    allow_large_sorts(conn)
    ids = unique_ids(program_ids)
    rows: dict[str, list[dict]] = {p: [] for p in ids}
    batches, params = _batches(conn, period, ids)
    for program_id, a, c, n in conn.execute(
        set_text(_SEVERAL_ITEMS.format(batches=batches)), {**params, "shown": ROWS_SHOWN}
    ):
        rows[program_id].append({"affiliate_id": a, "currency": c, "items": int(n)})
    return {
        p: (
            AuditResult(False, f"{len(r)} affiliate/currency pairs have several items", r)
            if r
            else AuditResult(True, "one item per affiliate and currency", [])
        )
        for p, r in rows.items()
    }


# The three blocking checks of a month's manifest, in their set form: name -> function.
MANIFEST_CHECKS = {
    "money_is_conserved": money_is_conserved,
    "finalized_rows_unchanged": finalized_rows_unchanged,
    "one_item_per_affiliate_currency": one_item_per_affiliate_currency,
}


def manifest_checks(conn: sa.Connection, period: date, program_ids: Iterable[str]) -> dict[str, dict[str, AuditResult]]:
    """Every manifest check for every program of the set: program id -> check name -> result."""
    ids = unique_ids(program_ids)
    by_check = {name: check(conn, period, ids) for name, check in MANIFEST_CHECKS.items()}
    return {p: {name: results[p] for name, results in by_check.items()} for p in ids}


_REVERSALS = """
SELECT nb.program_id, i.currency,
       SUM(CASE WHEN i.status IN ('posted', 'partially_reversed', 'reversed') THEN i.amount_minor ELSE 0 END),
       SUM(i.reversed_minor),
       SUM(COALESCE(a.amount_minor, 0) - COALESCE((SELECT e.amount_reversed_minor FROM transfer_status_event e
           WHERE e.attempt_pk = a.attempt_pk ORDER BY e.event_pk DESC LIMIT 1), 0)),
       SUM(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
           WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'owe_again'), 0)),
       SUM(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
           WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'write_off'), 0))
FROM payout_item i JOIN payout_batch nb ON nb.batch_id = i.batch_id
LEFT JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id AND a.state = 'posted'
WHERE nb.period = :period AND nb.program_id IN :program_ids
GROUP BY nb.program_id, i.currency ORDER BY nb.program_id, i.currency
"""

_MISCARRIED = """
SELECT nb.program_id, d.decision_pk FROM reversal_decision d
JOIN payout_item i ON i.payout_item_id = d.payout_item_id
JOIN payout_batch nb ON nb.batch_id = i.batch_id AND nb.period = :period AND nb.program_id IN :program_ids
JOIN owed_again_carry o ON o.decision_pk = d.decision_pk
WHERE o.amount_minor <> d.amount_minor OR d.decision <> 'owe_again'
ORDER BY nb.program_id, d.decision_pk
"""


@per_chunk
def reversals_are_accounted(conn: sa.Connection, period: date, program_ids: Iterable[str]) -> dict[str, AuditResult]:
    """After execution, per program and currency of its batch of the period:
    - posted - reversed = net paid: the posted items' amounts minus their reversed amounts equal the
      posted attempts' transfer amounts minus the last reversal state Stripe reported for them;
    - every reversed cent is pending, owed again or written off (decisions never exceed what was
      reversed), and every owed-again cent is carried by at most one batch with its full amount."""
    allow_large_sorts(conn)
    ids = unique_ids(program_ids)
    params = {"period": period, "program_ids": ids}
    tables: dict[str, list[dict]] = {p: [] for p in ids}
    drift: dict[str, list[str]] = {p: [] for p in ids}
    for program_id, currency, *sums in conn.execute(set_text(_REVERSALS), params):
        posted, reversed_, net_paid, owed, written = (int(v or 0) for v in sums)
        row = {
            "currency": currency,
            "posted_minor": posted,
            "reversed_minor": reversed_,
            "net_paid_minor": net_paid,
            "reversal_pending_minor": reversed_ - owed - written,
            "owed_again_minor": owed,
            "written_off_minor": written,
        }
        tables[program_id].append(row)
        if posted - reversed_ != net_paid:
            drift[program_id].append(f"{currency}: posted {posted} - reversed {reversed_} != net paid {net_paid}")
        if row["reversal_pending_minor"] < 0:
            drift[program_id].append(
                f"{currency}: decisions exceed the reversed amount by {-row['reversal_pending_minor']}"
            )
    for program_id, pk in conn.execute(set_text(_MISCARRIED), params):
        drift[program_id].append(f"decision {pk}: carried amount differs from the decision")
    results = {}
    for program_id, table in tables.items():
        if drift[program_id]:
            results[program_id] = AuditResult(False, "; ".join(drift[program_id]), table)
            continue
        pending = ", ".join(
            format_minor(r["reversal_pending_minor"], r["currency"]) for r in table if r["reversal_pending_minor"]
        )
        results[program_id] = AuditResult(
            True,
            f"reversals accounted in {len(table)} currencies"
            + (f"; {pending} reversed await a decision" if pending else ""),
            table,
        )
    return results
