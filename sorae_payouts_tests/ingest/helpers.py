"""Helpers for the ingest tests: write input files, seed the ledger directly, read tables back."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from sorae_payouts.ingest import ImportKind, ImportReport, import_file
from sorae_payouts.ledger import schema
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

AFFILIATE_HEADER = ["affiliate_id", "name", "email", "stripe_account_id", "currency"]
COMMISSION_HEADER = ["commission_id", "affiliate_id", "order_id", "amount", "currency", "earned_at"]
EVENT_HEADER = ["event_id", "order_id", "kind", "amount", "occurred_at"]
NOW = datetime(2026, 11, 20, tzinfo=UTC)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run_import(engine: sa.Engine, kind: ImportKind, path: Path, **kwargs) -> ImportReport:
    report = import_file(engine, kind, path, **kwargs)
    # Every row ends in exactly one outcome.
    assert report.rows_read == report.inserted + report.updated + report.already_present + report.rejected_rows
    return report


def problems(report: ImportReport) -> list[tuple[int, str]]:
    return [(r.row, r.column) for r in report.rejected]


def reason_of(report: ImportReport, row: int, column: str) -> str:
    reasons = [r.reason for r in report.rejected if r.row == row and r.column == column]
    assert reasons, f"no reject for row {row} column {column}: {report.rejected}"
    return reasons[0]


def read_rejects(path: Path) -> pd.DataFrame:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("#") and "header row excluded" in first_line
    return pd.read_csv(path, skiprows=1, dtype=str, keep_default_na=False)


def seed_affiliates(
    engine: sa.Engine, *affiliate_ids: str, currency: str = "usd", program_id: str = DEFAULT_PROGRAM
) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.affiliate.insert(),
            [
                {
                    "program_id": program_id,
                    "affiliate_id": a,
                    "name": f"Affiliate {a}",
                    "email": f"{a.lower()}@example.com",
                    "stripe_account_id": f"acct_{a}",
                    "currency": currency,
                    "imported_at": NOW,
                }
                for a in affiliate_ids
            ],
        )


def seed_commission(
    engine: sa.Engine,
    commission_id: str,
    order_id: str,
    amount_minor: int,
    currency: str = "usd",
    affiliate_id: str = "A1",
    earned_at: datetime = datetime(2026, 10, 5, 12, tzinfo=UTC),
    program_id: str = DEFAULT_PROGRAM,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.commission.insert().values(
                program_id=program_id,
                commission_id=commission_id,
                affiliate_id=affiliate_id,
                order_id=order_id,
                amount_minor=amount_minor,
                currency=currency,
                earned_at=earned_at,
                period=date(earned_at.year, earned_at.month, 1),
                imported_at=NOW,
            )
        )


def finalize_period(engine: sa.Engine, period: date, program_id: str = DEFAULT_PROGRAM) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.commission_period.insert().values(
                program_id=program_id, period=period, finalized_at=NOW, holding_days=0
            )
        )


def table_rows(engine: sa.Engine, table: sa.Table, *columns: str) -> list[tuple]:
    """Rows of `table` (only `columns`, else all but the program, surrogate keys, import times and the sharing
    flag), sorted."""
    names = columns or [
        c.name
        for c in table.columns
        if c.name not in ("program_id", "imported_at", "commission_pk", "event_pk", "allow_shared_destination")
    ]
    with engine.connect() as conn:
        result = conn.execute(sa.select(*[table.c[n] for n in names]))
        return sorted(tuple(_utc(v) for v in row) for row in result)


def _utc(value):
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones: compare them as aware UTC.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value
