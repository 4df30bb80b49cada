"""Reading input files in chunks, every field as text.

CSV (.csv) and Parquet (.parquet, .pq) are accepted. Every value is read as a string and stripped of
surrounding blanks; an empty field and a Parquet null both become "" (= missing). Amounts are never
floats: a Parquet column of floating point type makes the file unreadable, decimals are cast to
their exact text.

The header is checked before anything else: the file must have exactly the expected columns (in any
order, names compared case-insensitively). A missing column, an unexpected one or a repeated one
makes the whole file unreadable (`UnreadableFileError`): an unexpected column is most often the
wrong file or a changed export, and silently dropping its data is how payments get lost. So is a
CSV line with more or fewer fields than the header (broken quoting, a stray comma): the rows after
it cannot be trusted, and the error quotes the line.

Files are streamed: a chunk of rows at a time, never the whole file in memory.
"""

from __future__ import annotations

import csv
import threading
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Iterator, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from sorae_payouts.ingest.model import UnreadableFileError

T = TypeVar("T")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class Source:
    """An input file whose header has been checked: `header` as written, `names` normalized."""

    path: Path
    format: str
    header: tuple[str, ...]
    names: tuple[str, ...]
    columns: tuple[str, ...]

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """Frames of at most `chunk_rows` rows with exactly `columns`, all text, stripped."""
        tables = self._csv_tables(chunk_rows) if self.format == "csv" else self._parquet_tables(chunk_rows)
        try:
            for table in tables:
                frame = {name: pc.utf8_trim_whitespace(_as_text(table.column(i))).to_pandas()
                         for i, name in enumerate(self.names)}
                yield pd.DataFrame({c: frame[c].astype("str") for c in self.columns})
        except (pa.ArrowException, OSError) as exc:
            raise UnreadableFileError(f"{self.path}: cannot be read past the header: {exc}") from exc

    def _csv_tables(self, chunk_rows: int) -> Iterator[pa.Table]:
        # Arrow's CSV reader parses on all cores, several times faster than pandas'; everything is
        # typed as string so nothing is ever inferred (no floats, no dates, no "NA" -> null).
        batches = pa_csv.open_csv(
            self.path,
            read_options=pa_csv.ReadOptions(column_names=list(self.names), skip_rows=1, block_size=CSV_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(column_types={n: pa.string() for n in self.names},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        pending: list[pa.RecordBatch] = []
        count = 0
        for batch in batches:
            pending.append(batch)
            count += batch.num_rows
            while count >= chunk_rows:  # blocks are sized in bytes; chunks are sized in rows
                table = pa.Table.from_batches(pending)
                yield table.slice(0, chunk_rows)
                rest = table.slice(chunk_rows)
                pending, count = rest.to_batches(), rest.num_rows
        if count:
            yield pa.Table.from_batches(pending)

    def _parquet_tables(self, chunk_rows: int) -> Iterator[pa.Table]:
        parquet = pq.ParquetFile(self.path)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=list(self.header)):
            yield pa.Table.from_batches([batch])


def open_source(path: Path, columns: tuple[str, ...]) -> Source:
    """Check that `path` is a readable CSV or Parquet file with exactly `columns`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise UnreadableFileError(f"{path}: not a CSV or Parquet file (expected .csv, .parquet or .pq)")
    if not path.is_file():
        raise UnreadableFileError(f"{path}: no such file")
    if suffix in CSV_SUFFIXES:
        fmt, header = "csv", _csv_header(path)
    else:
        fmt, header = "parquet", _parquet_header(path)
    names = [raw.strip().lower() for raw in header]
    problems = []
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append("repeated columns: " + ", ".join(repeated))
    missing = [c for c in columns if c not in names]
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    extra = [raw for raw, name in zip(header, names) if name not in columns]
    if extra:
        problems.append("unexpected columns: " + ", ".join(extra))
    if problems:
        raise UnreadableFileError(f"{path}: {'; '.join(problems)} (expected exactly: {', '.join(columns)})")
    return Source(path, fmt, tuple(header), tuple(names), columns)


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


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise UnreadableFileError(f"{path}: not a readable UTF-8 CSV file ({exc})") from exc
    if not header or all(not h.strip() for h in header):
        raise UnreadableFileError(f"{path}: empty file (no header row)")
    return header


def _parquet_header(path: Path) -> list[str]:
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    if floats:
        raise UnreadableFileError(f"{path}: floating point columns: {', '.join(floats)} (amounts and ids must be "
                                  "strings or decimals; floats cannot hold money exactly)")
    return list(schema.names)


def _as_text(column: pa.Array) -> pa.Array:
    """The column as non-null Arrow strings ("" for null); decimals and timestamps keep their exact text
    (a zoned timestamp renders as "2026-10-05 12:00:00.000000Z", which the timestamp check accepts)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return pc.fill_null(column, "")


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield `items`, computed in a background thread up to `depth` items ahead.

    Parsing and checking the next chunk (pandas/Arrow, which release the GIL for most of their work)
    then overlaps with the database writing the current one. An error in the thread is re-raised
    here; closing this generator stops the thread. Use it under `contextlib.closing`.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple) -> bool:
        while not stop.is_set():
            try:
                queue.put(message, timeout=0.05)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, which decides
            put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="sorae-ingest-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
