"""The byte-level record splitter agrees with a CSV parser on well-formed files, whatever the read
block size, and rejects (never swallows) lines it cannot read."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from sorae_payouts.ingest.csv_records import RecordSplitter

cells = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)


def split(data: bytes, fields: int, block: int, limit: int = 1 << 20, chunk_rows: int = 3):
    splitter = RecordSplitter(io.BytesIO(data), None, max_record_bytes=limit, block_bytes=block)
    header = splitter.header()
    splitter.fields = fields
    records, problems = [], []
    for batch in splitter.batches(chunk_rows):
        records += [(row, batch.data[batch.offsets[i] : batch.offsets[i + 1]]) for i, row in enumerate(batch.row_no)]
        problems += [(p.row_no, p.reason) for p in batch.problems]
    return header, records, problems


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    rows=st.lists(st.lists(cells, min_size=3, max_size=3), max_size=12),
    block=st.integers(1, 64),
    crlf=st.booleans(),
    blank_lines=st.booleans(),
    plain_rows=st.integers(0, 40),
)
def test_records_match_pythons_csv_reader_at_any_block_size(rows, block, crlf, blank_lines, plain_rows):
    ending = "\r\n" if crlf else "\n"
    if not crlf:  # with "\n" endings a CSV writer leaves a lone CR unquoted: a broken line (tested below)
        rows = [[c.replace("\r", "") for c in row] for row in rows]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=ending)
    writer.writerow(["a", "b", "c"])
    for i in range(plain_rows):  # plain lines (the numpy fast path) before the generated ones
        writer.writerow([f"p{i}", "x", "y"])
    for row in rows:
        writer.writerow(row)
        if blank_lines:
            out.write(ending)
    data = out.getvalue().encode("utf-8")
    header, records, problems = split(data, 3, block)
    expected = [r for r in csv.reader(io.StringIO(out.getvalue(), newline=""))][1:]
    expected = [r for r in expected if r]  # blank lines are not rows
    assert header == "a,b,c" and problems == []
    assert [next(csv.reader(io.StringIO(r.decode("utf-8"), newline=""))) for _, r in records] == expected
    assert [row for row, _ in records] == list(range(1, len(expected) + 1))


def test_problems_are_rows_of_their_own_and_reading_goes_on():
    data = (
        b"a,b,c\n1,2,3\n4,\xff,6\n"
        + b"7," * 40
        + b"\n8,9\n"
        + b'10,"x\ny",z\n11,12,13\n'
        + b'14,"never closed\n15,16,17\n'
    )
    for block in (1, 5, 4096):
        header, records, problems = split(data, 3, block, limit=50)
        assert [row for row, _ in records] == [1, 5, 6]
        assert [(row, reason.split(":")[0].split(" (")[0]) for row, reason in problems] == [
            (2, "not UTF-8 text"),
            (3, "line longer than the limit of 50 bytes"),
            (4, "has 2 fields, the header has 3"),
            (7, "unclosed quote"),
        ]


def test_a_lone_carriage_return_rejects_its_row_instead_of_cutting_it(usd_affiliates, tmp_path):
    from sorae_payouts.ingest import ImportKind
    from sorae_payouts_tests.ingest.helpers import run_import

    path = tmp_path / "c.csv"
    path.write_bytes(
        b"commission_id,affiliate_id,order_id,amount,currency,earned_at\n"
        b"K1,A1,O1,1.00,usd,2026-10-05T12:00:00Z\n"
        b"K2,A1,O2\rK3,1.00,usd,2026-10-05T12:00:00Z\n"
    )
    report = run_import(usd_affiliates, ImportKind.COMMISSIONS, path)
    assert [(r.row, r.column) for r in report.rejected] == [(2, "(row)")]
    assert "carriage return outside quotes" in report.rejected[0].reason
    assert report.inserted == 1
