"""Order events: what happened to an order after its commission was earned.

`cancellation` and `reversal` take the order's whole commission back (their `amount` is ignored);
a `partial_reversal` takes back `amount`, a commission amount in the currency of the order's
commission and parsed with that currency's decimals. Events are applied later, at finalization;
here they are only recorded, once (append-only facts, like commissions).

An event must name an order that has an imported commission (events arriving before their
commission are rejected: import commissions first), and a partial reversal must name an order with
exactly one commission, since an amount cannot be split between several without guessing, and
cannot take back more than that commission.

Orders are matched within the event's program: an event of program B whose order has commissions
only in program A has no imported commission (in B).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from sorae_payouts.core.money import format_minor
from sorae_payouts.ingest.checks import RowChecks
from sorae_payouts.ingest.model import ImportKind, Written
from sorae_payouts.ingest.staging import STAGE, KindSpec, StagingArea

COLUMNS = ("event_id", "order_id", "kind", "amount", "occurred_at")
PARSED = (("occurred_utc", "ts"),)
KINDS = ("cancellation", "reversal", "partial_reversal")
ORDERS, AMOUNTS = "ingest_order", "ingest_amount"
_WITH_AMOUNT = f"{STAGE} s LEFT JOIN {AMOUNTS} a ON a.row_no = s.row_no"
_APPEND_ONLY = "order events are append-only: a correction needs a new event_id"


def _same_event(db: StagingArea) -> str:
    return f"e.program_id = {db.program.sql('s')} AND e.event_id = s.event_id"


def _same_order(db: StagingArea) -> str:
    return f"o.program_id = {db.program.sql('s')} AND o.order_id = s.order_id"


def validate(chunk: pd.DataFrame, checks: RowChecks) -> pd.DataFrame:
    """Row-level rules: ids, a known kind, an amount on partial reversals, a zoned `occurred_at`.
    The amount itself is parsed later, once the currency of the order's commission is known."""
    checks.require("event_id", "order_id", "kind", "occurred_at")
    checks.no_nul(*COLUMNS)
    checks.identifier("event_id", "order_id")
    kind = chunk["kind"]
    checks.fail((kind != "") & ~kind.isin(KINDS), "kind", f"unknown kind (expected one of {', '.join(KINDS)})")
    checks.fail(
        (kind == "partial_reversal") & checks.blank("amount"),
        "amount",
        "missing amount: a partial_reversal needs the commission amount to take back",
    )
    return pd.DataFrame({"occurred_utc": checks.timestamp("occurred_at")})


def apply(db: StagingArea, now: datetime) -> Written:
    """Order lookup, amount parsing in the order's currency, duplicate rules, one INSERT."""
    db.lock("commission", "SHARE")
    db.lock("order_event")
    program, named = db.program.sql("s"), db.program.named("s")
    in_ledger = f"EXISTS (SELECT 1 FROM order_event e WHERE {_same_event(db)})"
    # Per (program, order) for the order ids named in the file: its number of commissions, and (when there
    # is one) its currency and amount. Selected by order id alone: a filter on the program would lead
    # SQLite's planner to scan the program's commissions instead of probing the order_id index; the
    # few other programs' orders of the same ids never match, since every use joins on the program too.
    db.create_table(
        ORDERS,
        {"program_id": "text", "order_id": "text", "commissions": "int", "currency": "text", "amount_minor": "int"},
        primary=("program_id", "order_id"),
    )
    db.execute(
        f"INSERT INTO {ORDERS} (program_id, order_id, commissions, currency, amount_minor) SELECT "
        "c.program_id, c.order_id, COUNT(*), MIN(c.currency), MIN(c.amount_minor) FROM commission c "
        f"WHERE c.order_id IN (SELECT s.order_id FROM {STAGE} s WHERE s.ok = 1) "
        "GROUP BY c.program_id, c.order_id"
    )
    db.reject(
        "order_id",
        f"'order ' || s.order_id || ' has no imported commission'{named} || ': import commissions first'",
        f"s.ok = 1 AND NOT EXISTS (SELECT 1 FROM {ORDERS} o WHERE {_same_order(db)})",
    )
    # Only for new events: a recorded one stays a no-op on re-import even if its order gained a commission.
    db.reject(
        "order_id",
        "'partial_reversal is ambiguous: order ' || s.order_id || ' has ' || "
        "CAST(o.commissions AS TEXT) || ' commissions, so the amount cannot be attributed to one of them'",
        f"s.ok = 1 AND s.kind = 'partial_reversal' AND o.commissions > 1 AND NOT {in_ledger}",
        source=f"{STAGE} s JOIN {ORDERS} o ON {_same_order(db)}",
    )
    _parse_partial_amounts(db)
    db.reject_in_file_conflicts(
        ["s.order_id", "s.kind", "s.occurred_utc", "COALESCE(a.amount_minor, -1)"], source=_WITH_AMOUNT
    )
    db.reject_ledger_conflicts(
        f"order_event e ON {_same_event(db)}",
        [
            ("order_id", db.differs("e.order_id", "s.order_id")),
            ("kind", db.differs("e.kind", "s.kind")),
            ("amount", db.differs("e.amount_minor", "a.amount_minor")),
            ("occurred_at", db.differs("e.occurred_at", "s.occurred_utc")),
        ],
        _APPEND_ONLY,
        source=_WITH_AMOUNT,
    )
    loadable = f"s.ok = 1 AND {db.not_rejected}"
    inserted = db.execute(
        "INSERT INTO order_event (program_id, event_id, order_id, kind, amount_minor, currency, occurred_at, "
        f"imported_at) SELECT {program}, s.event_id, s.order_id, s.kind, a.amount_minor, a.currency, s.occurred_utc, "
        f":now FROM {_WITH_AMOUNT} WHERE {loadable} AND {db.first_of_id} AND NOT {in_ledger} ORDER BY s.row_no",
        now=now,
    ).rowcount
    return Written(inserted=inserted, updated=0)


def _parse_partial_amounts(db: StagingArea) -> None:
    """Parse partial-reversal amounts in the currency of the order's single commission, a window of
    rows at a time, into `ingest_amount` (row_no, amount_minor, currency); failures are rejects.
    Taking back more than the commission is refused too: it is a typo (500 for 5.00), not a reversal."""
    types = {"row_no": "int", "amount_minor": "int", "currency": "text"}
    db.create_table(AMOUNTS, types, primary="row_no")
    db.index_rows()
    after = 0
    while True:  # keyset pages of at most chunk_rows partial reversals
        # A recorded partial reversal is re-read in its recorded currency (to compare); a new one in
        # the currency of the order's single commission, and it cannot exceed that commission.
        rows = db.frame(
            "SELECT s.row_no, s.amount, COALESCE(e.currency, o.currency) AS currency, "
            "CASE WHEN e.event_id IS NULL THEN o.amount_minor END AS amount_minor "
            f"FROM {STAGE} s LEFT JOIN order_event e ON {_same_event(db)} "
            f"LEFT JOIN {ORDERS} o ON {_same_order(db)} AND o.commissions = 1 "
            "WHERE s.ok = 1 AND s.kind = 'partial_reversal' AND COALESCE(e.currency, o.currency) IS NOT NULL "
            "AND s.row_no > :after ORDER BY s.row_no LIMIT :page",
            after=after,
            page=db.chunk_rows,
        )
        if rows.empty:
            break
        after = int(rows["row_no"].iloc[-1])
        text = pd.DataFrame({"amount": rows["amount"].astype("str"), "currency": rows["currency"].astype("str")})
        checks = RowChecks(text, row_no=rows["row_no"])
        minor = checks.amount("amount", text["currency"], pd.Series(True, index=text.index))
        commission = pd.Series(pd.array(rows["amount_minor"].tolist(), dtype="Int64"), index=rows.index)
        too_much = (minor > commission).fillna(False)
        if too_much.any():
            reason = pd.Series("", index=text.index, dtype="str")
            reason[too_much] = [
                f"more than the order's commission of {format_minor(c, cur)}"
                for c, cur in zip(commission[too_much], text["currency"][too_much], strict=False)
            ]
            checks.fail(too_much, "amount", reason)
            minor = minor.where(~too_much)
        db.add_rejects(checks.rejects())
        good = minor.notna()
        db.load(
            AMOUNTS,
            pd.DataFrame(
                {"row_no": rows["row_no"][good], "amount_minor": minor[good], "currency": text["currency"][good]}
            ),
            types,
        )


SPEC = KindSpec(ImportKind.ORDER_EVENTS, COLUMNS, "event_id", PARSED, validate, apply)
