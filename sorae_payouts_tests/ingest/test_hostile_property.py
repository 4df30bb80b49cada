"""Property: a file mixing valid rows with arbitrary Unicode cells, undecodable bytes and over-long
cells never crashes the import; every valid row loads exactly once, every other row is rejected with
a reason, and importing the same file again changes nothing."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sorae_payouts.ingest import ImportKind, rejects_path
from sorae_payouts.ledger import schema
from sorae_payouts_tests.csv_cells import evaluable_cells
from sorae_payouts_tests.ingest.helpers import COMMISSION_HEADER, run_import, seed_affiliates, table_rows

LIMIT = 1024  # SORAE_MAX_LINE_BYTES for this test: long cells stay cheap
NOW = datetime(2026, 11, 20, tzinfo=UTC)
_files = itertools.count()

valid_rows = st.tuples(st.integers(1, 10**9), st.integers(0, 99), st.integers(0, 600 * 24 * 60))
text_cells = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)  # any encodable Unicode
hostile_rows = st.one_of(
    st.tuples(st.just("text"), st.lists(text_cells, min_size=1, max_size=8)),
    # Arbitrary bytes (invalid UTF-8, NUL, CR, commas) on one line: no newline and no quote, which
    # would legitimately join the next lines into the same CSV record.
    st.tuples(st.just("bytes"), st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").replace(b'"', b""))),
    st.tuples(st.just("long"), st.integers(LIMIT + 1, 3 * LIMIT)),
)


def encode(fields: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue().encode("utf-8")


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(st.one_of(st.tuples(st.just("valid"), valid_rows), hostile_rows), min_size=1, max_size=20),
    chunk_rows=st.integers(1, 7),
)
def test_hostile_rows_are_rejected_alone_and_valid_rows_load_once(engine, tmp_path, monkeypatch, rows, chunk_rows):
    monkeypatch.setenv("SORAE_MAX_LINE_BYTES", str(LIMIT))
    if not table_rows(engine, schema.affiliate, "affiliate_id"):
        seed_affiliates(engine, "A1")
    n = next(_files)
    lines, expected = [encode(COMMISSION_HEADER)], {}
    for i, (kind, value) in enumerate(rows):
        if kind == "valid":  # ids K<file>-<row> are unique across examples (the ledger is shared)
            whole, cents, minutes = value
            earned = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
            expected[f"K{n}-{i}"] = whole * 100 + cents
            lines.append(
                encode(
                    [
                        f"K{n}-{i}",
                        "A1",
                        f"O{n}-{i}",
                        f"{whole}.{cents:02d}",
                        "usd",
                        earned.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    ]
                )
            )
        elif kind == "text":  # the affiliate never exists: whatever else the cells hold, the row is rejected
            lines.append(encode([f"X{n}-{i}", "ZZ" + value[0], *value[1:]]))
        elif kind == "bytes":
            lines.append(f"X{n}-{i},ZZ".encode() + value + b"\n")
        else:
            lines.append(encode([f"X{n}-{i}", "A1", f"O{n}-{i}", "1.00", "usd", "L" * value]))
    path = tmp_path / f"h{n}.csv"
    path.write_bytes(b"".join(lines))

    report = run_import(engine, ImportKind.COMMISSIONS, path, chunk_rows=chunk_rows, now=NOW)
    assert report.rows_read == len(rows)
    assert report.inserted == len(expected) and report.rejected_rows == len(rows) - len(expected)
    assert all(r.reason for r in report.rejected)
    stored = {
        k: v
        for k, v in table_rows(engine, schema.commission, "commission_id", "amount_minor")
        if k.startswith((f"K{n}-", f"X{n}-"))
    }
    assert stored == expected
    if report.rejected_rows:
        assert evaluable_cells(rejects_path(path), numeric=("row",)) == []

    again = run_import(engine, ImportKind.COMMISSIONS, path, chunk_rows=chunk_rows, now=NOW)
    assert (again.inserted, again.already_present, again.rejected_rows) == (0, len(expected), report.rejected_rows)
