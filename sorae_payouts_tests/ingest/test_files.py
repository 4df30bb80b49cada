"""Input files: CSV quirks and Parquet load; a file that cannot be read loads nothing and says why."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sorae_payouts.ingest import ImportKind, UnreadableFileError, import_file
from sorae_payouts.ingest.reader import estimate_rows
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import COMMISSION_HEADER, run_import, table_rows, write_csv

C = ImportKind.COMMISSIONS
ROW = ["K1", "A1", "O1", "12.34", "usd", "2026-10-05T12:00:00Z"]


def assert_nothing_loaded(engine, tmp_path) -> None:
    assert table_rows(engine, schema.commission, "commission_id") == []
    assert list(tmp_path.glob("*rejects*")) == []


WRONG_COLUMNS = [
    (["commission_id", "affiliate_id", "order_id", "earned_at"], "missing columns: amount, currency"),
    ([*COMMISSION_HEADER, "note"], "unexpected columns: note"),
    ([*COMMISSION_HEADER[:-1], "amount"], "repeated columns: amount; missing columns: earned_at"),
]
NOT_CSV_OR_PARQUET = [
    ("c.txt", b"commission_id\n", "not a CSV or Parquet file"),
    ("c.csv", b"", "empty file"),
    ("c.csv", b"\xff\xfe\x00c\x00o\x00m", "not a readable UTF-8 CSV file"),
    ("c.parquet", b"commission_id,amount\n", "not a readable Parquet file"),
    ("gone.csv", None, "no such file"),
]


# Several cases per test: the database is set up once per backend (each set-up costs ~0.3 s).
def test_wrong_columns_make_the_file_unreadable(usd_affiliates, tmp_path):
    for header, message in WRONG_COLUMNS:
        path = write_csv(tmp_path / "c.csv", header, [ROW[: len(header)] + ["x"] * (len(header) - len(ROW))])
        with pytest.raises(UnreadableFileError, match=message):
            import_file(usd_affiliates, C, path)
        assert_nothing_loaded(usd_affiliates, tmp_path)


def test_files_that_are_not_csv_or_parquet_are_unreadable(usd_affiliates, tmp_path):
    for name, content, message in NOT_CSV_OR_PARQUET:
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(UnreadableFileError, match=message):
            import_file(usd_affiliates, C, tmp_path / name)
        assert_nothing_loaded(usd_affiliates, tmp_path)


def test_a_header_only_file_is_an_empty_import_not_an_error(usd_affiliates, tmp_path):
    report = run_import(usd_affiliates, C, write_csv(tmp_path / "c.csv", COMMISSION_HEADER, []))
    assert (report.rows_read, report.inserted, report.rejected_count, report.rejects_path) == (0, 0, 0, None)


def test_a_line_with_a_surplus_field_is_rejected_by_itself(usd_affiliates, tmp_path):
    path = write_csv(tmp_path / "c.csv", COMMISSION_HEADER, [[f"K{i}", *ROW[1:]] for i in range(5)])
    with path.open("a") as handle:
        handle.write("K9,A1,O9,1.00,usd,2026-10-05T12:00:00Z,surplus\nK10,A1,O10,1.00,usd,2026-10-05T12:00:00Z\n")
    report = run_import(usd_affiliates, C, path, chunk_rows=2)
    assert [(r.row, r.column) for r in report.rejected] == [(6, "(row)")]
    assert "has 7 fields, the header has 6" in report.rejected[0].reason
    assert report.inserted == 6


def test_csv_quirks_bom_header_case_quotes_blank_lines_and_padding(usd_affiliates, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(
        "\ufeffEARNED_AT, Commission_ID ,affiliate_id,order_id,amount,currency\r\n"
        '2026-10-05T12:00:00Z,"K,1",A1," O1 ", 12.34 ,usd\r\n'
        "\r\n"
        '2026-10-05T12:00:00Z,"K""2",A1,"O\n2",NA,usd\r\n'.encode()
    )
    report = run_import(usd_affiliates, C, path)
    assert [(r.row, r.column, r.value) for r in report.rejected] == [(2, "amount", "NA")]
    assert table_rows(usd_affiliates, schema.commission, "commission_id", "order_id", "amount_minor") == [
        ("K,1", "O1", 1234)
    ]
    assert pd.read_csv(report.rejects_path, skiprows=1, dtype=str)["commission_id"].tolist() == ['K"2']


def test_parquet_with_strings_decimals_and_zoned_timestamps_loads(usd_affiliates, tmp_path):
    table = pa.table(
        {
            "commission_id": ["K1", "K2", "K3"],
            "affiliate_id": ["A1", "A1", None],
            "order_id": ["O1", "O2", "O3"],
            "amount": pa.array([Decimal("12.30"), Decimal("0.05"), Decimal("1.00")], pa.decimal128(10, 2)),
            "currency": ["usd", "eur", "usd"],
            "earned_at": pa.array([pd.Timestamp("2026-10-05 12:00", tz="UTC")] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=2)
    report = run_import(usd_affiliates, C, tmp_path / "c.parquet", chunk_rows=2)
    assert [(r.row, r.column) for r in report.rejected] == [(3, "affiliate_id")]
    assert table_rows(usd_affiliates, schema.commission, "commission_id", "amount_minor", "currency") == [
        ("K1", 1230, "usd"),
        ("K2", 5, "eur"),
    ]
    assert estimate_rows(tmp_path / "c.parquet") == 3


def test_parquet_float_amounts_are_refused(usd_affiliates, tmp_path):
    table = pa.table({c: ["x"] for c in COMMISSION_HEADER} | {"amount": pa.array([12.34], pa.float64())})
    pq.write_table(table, tmp_path / "c.pq")
    with pytest.raises(UnreadableFileError, match="floating point columns: amount"):
        import_file(usd_affiliates, C, tmp_path / "c.pq")
    assert_nothing_loaded(usd_affiliates, tmp_path)
