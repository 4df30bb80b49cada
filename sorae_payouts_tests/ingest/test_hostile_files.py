"""Hostile files and cells: each bad line or cell is a reject of its own row (row, column, reason), the
valid rows of the file load; only a file without a readable, right header is refused whole."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sorae_payouts.ingest import ImportKind, UnreadableFileError, import_file
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import (
    COMMISSION_HEADER,
    EVENT_HEADER,
    read_rejects,
    run_import,
    seed_commission,
    table_rows,
    write_csv,
)

C, E = ImportKind.COMMISSIONS, ImportKind.ORDER_EVENTS
AT = "2026-10-05T12:00:00Z"
HEADER = ",".join(COMMISSION_HEADER).encode() + b"\n"


def good(i: int) -> bytes:
    return f"K{i},A1,O{i},1.00,usd,{AT}\n".encode()


def loaded(engine) -> list[str]:
    return [r[0] for r in table_rows(engine, schema.commission, "commission_id")]


def test_non_ascii_digits_are_row_rejects_not_a_crash(usd_affiliates, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "١٢", "usd", AT],  # Arabic-Indic digits
            ["K2", "A1", "O2", "１２.00", "usd", AT],  # full-width digits
            ["K3", "A1", "O3", "12.00", "usd", "２０２６-10-05T12:00:00Z"],
            ["K4", "A1", "O4", "12.00", "usd", AT],
        ],
    )
    report = run_import(usd_affiliates, C, path, chunk_rows=2)
    assert [(r.row, r.column, r.reason) for r in report.rejected] == [
        (1, "amount", "digits must be ASCII 0-9"),
        (2, "amount", "digits must be ASCII 0-9"),
        (3, "earned_at", "digits must be ASCII 0-9"),
    ]
    assert loaded(usd_affiliates) == ["K4"]


def test_non_ascii_digits_in_a_partial_reversal_are_rejected(usd_affiliates, tmp_path):
    seed_commission(usd_affiliates, "K1", "O1", 1000)
    path = write_csv(
        tmp_path / "e.csv",
        EVENT_HEADER,
        [["E1", "O1", "partial_reversal", "٣", AT], ["E2", "O1", "partial_reversal", "3.00", AT]],
    )
    report = run_import(usd_affiliates, E, path)
    assert [(r.row, r.column, r.reason) for r in report.rejected] == [(1, "amount", "digits must be ASCII 0-9")]
    assert table_rows(usd_affiliates, schema.order_event, "event_id", "amount_minor") == [("E2", 300)]


def test_an_undecodable_byte_rejects_its_row_with_the_byte_offset(usd_affiliates, tmp_path):
    bad = b"K2,A1,O2,1.00,us\xffd," + AT.encode() + b"\n"
    path = tmp_path / "c.csv"
    path.write_bytes(HEADER + good(1) + bad + good(3))
    report = run_import(usd_affiliates, C, path)
    offset = len(HEADER + good(1)) + bad.index(b"\xff")
    assert [(r.row, r.column) for r in report.rejected] == [(2, "(row)")]
    assert f"byte 0xff at byte offset {offset} of the file" in report.rejected[0].reason
    assert loaded(usd_affiliates) == ["K1", "K3"]


def test_an_over_long_line_rejects_its_row_and_reading_goes_on(usd_affiliates, tmp_path):
    long_line = b"K2,A1,O2,1.00,usd," + b"x" * (6 << 20) + b"\n"  # beyond the 1 MB cap and a 4 MB read block
    path = tmp_path / "c.csv"
    path.write_bytes(HEADER + good(1) + long_line + good(3) + b'K4,A1,"O\n4",1.00,usd,' + AT.encode() + b"\n")
    report = run_import(usd_affiliates, C, path, chunk_rows=2)
    assert [(r.row, r.column) for r in report.rejected] == [(2, "(row)")]
    assert "line longer than the limit of 1,048,576 bytes" in report.rejected[0].reason
    assert loaded(usd_affiliates) == ["K1", "K3", "K4"]
    assert read_rejects(report.rejects_path)["row"].tolist() == ["2"]


def test_the_line_limit_is_a_setting_and_caps_cells_of_parquet_too(usd_affiliates, tmp_path, monkeypatch):
    monkeypatch.setenv("SORAE_MAX_LINE_BYTES", "2048")
    path = tmp_path / "c.csv"
    path.write_bytes(HEADER + good(1) + b"K2,A1,O2,1.00,usd," + b"y" * 3000 + b"\n" + good(3))
    report = run_import(usd_affiliates, C, path)
    assert [(r.row, r.column) for r in report.rejected] == [(2, "(row)")]
    pq.write_table(
        pa.table(
            {c: [v, v] for c, v in zip(COMMISSION_HEADER, ["K5", "A1", "O5", "1.00", "usd", AT], strict=False)}
            | {"commission_id": ["K5", "K6"], "order_id": ["O5", "o" * 3000]}
        ),
        tmp_path / "c.parquet",
    )
    report = run_import(usd_affiliates, C, tmp_path / "c.parquet")
    assert [(r.row, r.column, r.reason) for r in report.rejected] == [
        (2, "order_id", "order_id is longer than the limit of 2,048 bytes"),
        (2, "order_id", "order_id is longer than 64 characters"),
    ]


def test_broken_quotes_and_field_counts_reject_only_their_rows(usd_affiliates, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(
        HEADER
        + good(1)
        + b"K2,A1,O2,1.00\n"
        + good(3)
        + b'K4,A1,O"4,1.00,usd,'
        + AT.encode()
        + b"\n"
        + good(5)
        + b'K6,A1,"O6,1.00,usd,'
        + AT.encode()
        + b"\n"
    )
    report = run_import(usd_affiliates, C, path)
    rejected = {r.row: r.reason for r in report.rejected}
    assert sorted(rejected) == [2, 6]
    assert "has 4 fields" in rejected[2] and "unclosed quote" in rejected[6]
    assert loaded(usd_affiliates) == ["K1", "K3", "K4", "K5"]  # a quote inside a field is text, as in Arrow


@pytest.mark.parametrize(
    "content, message",
    [
        (b"commission_id," + b"h" * (2 << 20) + b"\n" + good(1), "header row unreadable: line longer than the limit"),
        (b"commission_id,affiliate_id,order_id,amount,currency,earned\xe9_at\n" + good(1), "not UTF-8 text"),
        (b"\n\n", "empty file"),
    ],
)
def test_a_file_without_a_readable_header_is_refused_whole(usd_affiliates, tmp_path, content, message):
    (tmp_path / "c.csv").write_bytes(content)
    with pytest.raises(UnreadableFileError, match=message):
        import_file(usd_affiliates, C, tmp_path / "c.csv")
    assert loaded(usd_affiliates) == []
    assert list(tmp_path.glob("*rejects*")) == []


def test_dates_outside_the_ledger_window_are_rejected_with_the_window(usd_affiliates, tmp_path, monkeypatch):
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "1.00", "usd", "1970-01-01T00:00:00Z"],
            ["K2", "A1", "O2", "1.00", "usd", "2100-01-01T00:00:00Z"],
            ["K3", "A1", "O3", "1.00", "usd", "2026-11-20T12:30:00Z"],  # within the clock skew
            ["K4", "A1", "O4", "1.00", "usd", "2025-01-01T00:00:00Z"],  # the first instant of the first period
            ["K5", "A1", "O5", "1.00", "usd", "2024-12-31T23:59:59Z"],
        ],
    )
    report = run_import(usd_affiliates, C, path, now=now)
    assert [(r.row, r.column) for r in report.rejected] == [(1, "earned_at"), (2, "earned_at"), (5, "earned_at")]
    assert (
        "accepted from 2025-01-01 (first period 2025-01, SORAE_FIRST_PERIOD) to 2026-11-20 13:00 UTC"
        in report.rejected[0].reason
    )
    assert loaded(usd_affiliates) == ["K3", "K4"]
    monkeypatch.setenv("SORAE_FIRST_PERIOD", "2026-11")
    path = write_csv(tmp_path / "e.csv", EVENT_HEADER, [["E1", "K4", "reversal", "", "2026-10-31T23:00:00Z"]])
    report = run_import(usd_affiliates, E, path, now=now)
    assert report.rejected[0].column == "occurred_at" and "accepted from 2026-11-01" in report.rejected[0].reason


def test_the_cli_exits_2_on_a_hostile_file_and_loads_the_valid_rows(usd_affiliates, ledger_url, tmp_path):
    from typer.testing import CliRunner

    from sorae_payouts.cli import import_cmd

    path = tmp_path / "c.csv"
    path.write_bytes(
        HEADER
        + good(1)
        + "K2,A1,O2,١٢[/x],usd,".encode()
        + AT.encode()
        + b"\n"
        + b"K3,A1,O3,1.00,\xffusd,"
        + AT.encode()
        + b"\n"
        + b"K4,A1,O4,1.00,usd,1970-01-01T00:00:00Z\n"
        + good(5)
    )
    result = CliRunner().invoke(
        import_cmd.app, ["commissions", str(path)], env={"SORAE_DATABASE_URL": ledger_url, "COLUMNS": "250"}
    )
    assert result.exit_code == 2, result.output
    assert "inserted 2" in result.output and "rejected 3" in result.output
    assert "digits must be ASCII 0-9" in result.output and "not UTF-8 text" in result.output
    assert "[/x]" in result.output  # input text is printed as text, never read as rich markup
    assert "outside the plausible window" in result.output
    assert loaded(usd_affiliates) == ["K1", "K5"]
