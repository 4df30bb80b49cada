"""Reading input files in chunks, every field as text.

CSV (.csv) and Parquet (.parquet, .pq) are accepted. Every value is read as a string and stripped of
surrounding blanks; an empty field and a Parquet null both become "" (= missing). Amounts are never
floats: a Parquet column of floating point type makes the file unreadable, decimals are cast to
their exact text.

The header is checked before anything else: the file must have exactly the expected columns (in any
order, names compared case-insensitively; a kind's optional columns may be absent and then read as
""). A missing column, an unexpected one or a repeated one makes the whole file unreadable
(`UnreadableFileError`): an unexpected column is most often the wrong file or a changed export, and
silently dropping its data is how payments get lost. So is a header that is not UTF-8 or longer than
the line limit.

Past the header, a problem of one CSV line is a problem of that row only (see `csv_records`): a
line that is not UTF-8, longer than the limit (`SORAE_MAX_LINE_BYTES`, default 1 MB), with the wrong
number of fields or an unclosed quote is rejected with its row number; the other rows load.

Files are streamed: a chunk of rows at a time, never the whole file in memory.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from sorae_payouts.ingest.csv_records import (
    DEFAULT_MAX_RECORD_BYTES,
    HeaderError,
    RecordBatch,
    RecordProblem,
    RecordSplitter,
)
from sorae_payouts.ingest.model import UnreadableFileError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
WHOLE_ROW = "(row)"  # the column named by a reject that concerns the whole line


def max_line_bytes() -> int:
    """The length cap of a header, a CSV line and a cell: SORAE_MAX_LINE_BYTES (bytes), default 1 MB."""
    raw = os.environ.get("SORAE_MAX_LINE_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_RECORD_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"SORAE_MAX_LINE_BYTES={raw!r} is not a number of bytes") from None
    if value < 1024:
        raise ValueError(f"SORAE_MAX_LINE_BYTES={value} is too small (at least 1024 bytes)")
    return value


@dataclass
class ReadChunk:
    """Consecutive rows of a file: `frame` the readable ones (exactly the source's columns, text,
    stripped), `row_no` their data row numbers; `unreadable` the rows rejected as a whole while
    reading (row_no, col, reason, value)."""

    frame: pd.DataFrame
    row_no: pd.Series
    unreadable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["row_no", "col", "reason", "value"]))

    @property
    def rows(self) -> int:
        return len(self.frame) + len(self.unreadable)


@dataclass(frozen=True)
class Source:
    """An input file whose header has been checked: `header` as written, `names` normalized."""

    path: Path
    format: str
    header: tuple[str, ...]
    names: tuple[str, ...]
    columns: tuple[str, ...]
    max_line_bytes: int = DEFAULT_MAX_RECORD_BYTES

    def chunks(self, chunk_rows: int) -> Iterator[ReadChunk]:
        """Chunks of at most `chunk_rows` rows, in file order."""
        if self.format == "csv":
            yield from self._csv_chunks(chunk_rows)
            return
        first_row = 1
        try:
            for table in self._parquet_tables(chunk_rows):
                frame = self._frame(table)
                yield ReadChunk(frame, pd.Series(range(first_row, first_row + len(frame)), dtype="int64"))
                first_row += len(frame)
        except (pa.ArrowException, OSError) as exc:
            raise UnreadableFileError(f"{self.path}: cannot be read past the header: {exc}") from exc

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        frame = {
            name: pc.utf8_trim_whitespace(_as_text(table.column(i))).to_pandas() for i, name in enumerate(self.names)
        }
        empty = pd.Series([""] * table.num_rows, dtype="str")
        return pd.DataFrame({c: frame[c].astype("str") if c in frame else empty for c in self.columns})

    def _csv_chunks(self, chunk_rows: int) -> Iterator[ReadChunk]:
        with self.path.open("rb") as handle:
            splitter = RecordSplitter(handle, None, max_record_bytes=self.max_line_bytes)
            splitter.header()
            splitter.fields = len(self.names)
            for batch in splitter.batches(chunk_rows):
                table = self._parse(batch)
                unreadable = pd.DataFrame(
                    {
                        "row_no": pd.Series([p.row_no for p in batch.problems], dtype="int64"),
                        "col": WHOLE_ROW,
                        "reason": [p.reason for p in batch.problems],
                        "value": [p.value for p in batch.problems],
                    }
                )
                yield ReadChunk(self._frame(table), pd.Series(batch.row_no, dtype="int64"), unreadable)

    def _parse(self, batch: RecordBatch) -> pa.Table:
        """Arrow parses the records the splitter kept; one row per record, or the slow path."""
        names = list(self.names)
        # A lone CR ends a row for Arrow but not for the splitter: such chunks take the slow path, so
        # that a row count that still matches can never hide a shifted row.
        lone_cr = batch.data.count(b"\r") != batch.data.count(b"\r\n")
        if batch.row_no and not lone_cr:
            # Arrow's CSV reader parses on all cores, several times faster than pandas'; everything is
            # typed as string so nothing is ever inferred (no floats, no dates, no "NA" -> null).
            try:
                table = pa_csv.read_csv(
                    pa.py_buffer(batch.data),
                    read_options=pa_csv.ReadOptions(column_names=names, block_size=max(len(batch.data), 1 << 20)),
                    parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                    convert_options=pa_csv.ConvertOptions(
                        column_types={n: pa.string() for n in names},
                        strings_can_be_null=False,
                        quoted_strings_can_be_null=False,
                    ),
                )
                if table.num_rows == len(batch.row_no):
                    return table
            except pa.ArrowInvalid:
                pass
        return self._parse_one_by_one(batch)

    def _parse_one_by_one(self, batch: RecordBatch) -> pa.Table:
        """Python's csv module, record by record: records Arrow would not split one to one become
        rejects of their own row instead of shifting every row number after them."""
        rows, kept = [], []
        for i, row_no in enumerate(batch.row_no):
            record = batch.data[batch.offsets[i] : batch.offsets[i + 1]].decode("utf-8")
            try:
                parsed = list(csv.reader(io.StringIO(record, newline=""), strict=True))
            except csv.Error as exc:
                parsed, problem = [], f"not a well-formed CSV line ({exc})"
            else:
                problem = None
            fields = parsed[0] if len(parsed) == 1 else None
            if problem is None and fields is None:  # a bare CR outside quotes ends a row for CSV readers
                problem = "a carriage return outside quotes splits this line (quote the field or remove the CR)"
            elif problem is None and len(fields) != len(self.names):
                problem = f"has {len(fields)} fields, the header has {len(self.names)}"
            if problem is None:
                rows.append(fields)
                kept.append(row_no)
            else:
                batch.problems.append(RecordProblem(row_no, problem, record[:200]))
        batch.row_no = kept
        batch.problems.sort(key=lambda p: p.row_no)
        return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(self.names)})

    def _parquet_tables(self, chunk_rows: int) -> Iterator[pa.Table]:
        parquet = pq.ParquetFile(self.path)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=list(self.header)):
            yield pa.Table.from_batches([batch])


def open_source(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> Source:
    """Check that `path` is a readable CSV or Parquet file with exactly `columns` (those in
    `optional` may be absent)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise UnreadableFileError(f"{path}: not a CSV or Parquet file (expected .csv, .parquet or .pq)")
    if not path.is_file():
        raise UnreadableFileError(f"{path}: no such file")
    limit = max_line_bytes()
    if suffix in CSV_SUFFIXES:
        fmt, header = "csv", _csv_header(path, limit)
    else:
        fmt, header = "parquet", _parquet_header(path)
    names = [raw.strip().lower() for raw in header]
    problems = []
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append("repeated columns: " + ", ".join(repeated))
    missing = [c for c in columns if c not in names and c not in optional]
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    extra = [raw for raw, name in zip(header, names, strict=False) if name not in columns]
    if extra:
        problems.append("unexpected columns: " + ", ".join(_short(e) for e in extra))
    if problems:
        expected = ", ".join(c + (" (optional)" if c in optional else "") for c in columns)
        raise UnreadableFileError(f"{path}: {'; '.join(problems)} (expected exactly: {expected})")
    return Source(path, fmt, tuple(header), tuple(names), columns, limit)


def estimate_rows(path: Path) -> int | None:
    """Rough number of data rows, for progress bars: exact for Parquet, from the average length of
    the first lines for CSV; None when unknown."""
    path = Path(path)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return pq.ParquetFile(path).metadata.num_rows
        with path.open("rb") as handle:
            sample = handle.read(1 << 16)
        lines = sample.count(b"\n")
        if lines < 2:
            return max(lines, 1)
        return max(int(path.stat().st_size / (len(sample) / lines)) - 1, 1)
    except (OSError, pa.ArrowException):
        return None


def _csv_header(path: Path, limit: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            line = RecordSplitter(handle, None, max_record_bytes=limit).header()
        header = next(csv.reader([line]), None)
    except HeaderError as exc:
        raise UnreadableFileError(f"{path}: not a readable UTF-8 CSV file: {exc}") from exc
    except (csv.Error, OSError) as exc:
        raise UnreadableFileError(f"{path}: not a readable UTF-8 CSV file ({exc})") from exc
    if not header or all(not h.strip() for h in header):
        raise UnreadableFileError(f"{path}: empty file (no header row)")
    return header


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _parquet_header(path: Path) -> list[str]:
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    if floats:
        raise UnreadableFileError(
            f"{path}: floating point columns: {', '.join(floats)} (amounts and ids must be "
            "strings or decimals; floats cannot hold money exactly)"
        )
    return list(schema.names)


def _as_text(column: pa.Array) -> pa.Array:
    """The column as non-null Arrow strings ("" for null); decimals and timestamps keep their exact text
    (a zoned timestamp renders as "2026-10-05 12:00:00.000000Z", which the timestamp check accepts)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return pc.fill_null(column, "")
