"""Commissions: what an affiliate earned on one order, in one currency, at one instant.

Commissions are immutable facts. A commission_id seen again with the same content is already
present (re-importing a file is a no-op); with different content it is rejected, because a changed
amount on a known commission is either an upstream bug or a correction that must arrive as an order
event. A commission belongs to the period (UTC month) of `earned_at`; once that period is finalized
(a `commission_period` row exists), its totals have been snapshotted and paid from, so a late
commission for it is rejected instead of silently changing a closed month.

Everything is within the commission's program: its id is unique there, its affiliate must be one of
that program's, and only that program's finalized months are closed to it.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from sorae_payouts.ingest.checks import RowChecks
from sorae_payouts.ingest.model import ImportKind, Written
from sorae_payouts.ingest.staging import STAGE, KindSpec, StagingArea

COLUMNS = ("commission_id", "affiliate_id", "order_id", "amount", "currency", "earned_at")
PARSED = (("amount_minor", "int"), ("earned_utc", "ts"), ("period", "date"))
_IMMUTABLE = "commissions are immutable: a correction needs an order event or a new commission_id"


def validate(chunk: pd.DataFrame, checks: RowChecks) -> pd.DataFrame:
    """Row-level rules: all fields present, ids fit, supported currency, an exact positive amount
    with no more decimals than the currency has, and a zoned ISO 8601 `earned_at`."""
    checks.require(*COLUMNS)
    checks.no_nul(*COLUMNS)
    checks.identifier("commission_id", "affiliate_id", "order_id")
    known_currency = checks.currency("currency")
    minor = checks.amount("amount", chunk["currency"], known_currency & ~checks.blank("amount"))
    earned = checks.timestamp("earned_at")
    # The period is the UTC month of earned_at (periods.period_of), computed column-wise.
    month = earned.dt.tz_convert(None).to_numpy().astype("datetime64[M]")
    return pd.DataFrame(
        {
            "amount_minor": minor,
            "earned_utc": earned,
            "period": pd.Series(month.astype("datetime64[us]"), index=chunk.index),
        }
    )


def apply(db: StagingArea, now: datetime) -> Written:
    """Cross-row rules in SQL, then one INSERT of the rows that passed every rule."""
    db.lock("commission_period", "SHARE")  # no month gets finalized between our check and our insert
    db.lock("commission")
    db.reject_in_file_conflicts(["s.affiliate_id", "s.order_id", "s.amount_minor", "s.currency", "s.earned_utc"])
    program, named = db.program.sql("s"), db.program.named("s")
    same = f"c.program_id = {program} AND c.commission_id = s.commission_id"
    db.reject_ledger_conflicts(
        f"commission c ON {same}",
        [
            ("affiliate_id", db.differs("c.affiliate_id", "s.affiliate_id")),
            ("order_id", db.differs("c.order_id", "s.order_id")),
            ("currency", db.differs("c.currency", "s.currency")),
            ("amount", db.differs("c.amount_minor", "s.amount_minor")),
            ("earned_at", db.differs("c.earned_at", "s.earned_utc")),
        ],
        _IMMUTABLE,
    )
    # Only for rows not yet in the ledger, tested last: the cheap test on the small table comes first.
    new = f"NOT EXISTS (SELECT 1 FROM commission c WHERE {same})"
    db.reject(
        "affiliate_id",
        f"'unknown affiliate ' || s.affiliate_id{named} || ': not in the ledger (import affiliates first)'",
        "s.ok = 1 AND NOT EXISTS (SELECT 1 FROM affiliate a WHERE a.program_id = "
        f"{program} AND a.affiliate_id = s.affiliate_id) AND {new}",
    )
    db.reject(
        "earned_at",
        f"'period ' || {db.month_text('s.period')}{named} || ' is already finalized: late "
        "commissions cannot enter a finalized month'",
        f"s.ok = 1 AND EXISTS (SELECT 1 FROM commission_period p WHERE p.program_id = {program} "
        f"AND p.period = s.period) AND {new}",
    )
    loadable = f"s.ok = 1 AND {db.not_rejected}"
    inserted = db.execute(
        "INSERT INTO commission (program_id, commission_id, affiliate_id, order_id, amount_minor, currency, "
        f"earned_at, period, imported_at) SELECT {program}, s.commission_id, s.affiliate_id, s.order_id, "
        f"s.amount_minor, s.currency, s.earned_utc, s.period, :now FROM {STAGE} s "
        f"WHERE {loadable} AND {db.first_of_id} AND {new} ORDER BY s.row_no",
        now=now,
    ).rowcount
    return Written(inserted=inserted, updated=0)


SPEC = KindSpec(ImportKind.COMMISSIONS, COLUMNS, "commission_id", PARSED, validate, apply)
