"""Splitting a CSV file into records at the byte level, before any parser sees it.

Why by hand: Arrow's CSV reader (and pandas', and Python's) treat the file as a whole. One byte that
is not UTF-8 fails the whole block ("invalid UTF8 data"), one line longer than a block fails the
file ("straddling object straddles two block boundaries"), and a 1 GB line is held in memory before
anything is said. Arrow's `invalid_row_handler` only sees rows with a wrong number of fields, and
only after decoding. So records are cut here first, each one judged on its own:

- a record is a line, or several lines when a quoted field (a `"` at the start of a field, as
  Arrow and RFC 4180 read it) holds line breaks; blank lines between records are skipped (they are
  not rows, as before);
- a record longer than `max_record_bytes` is rejected as a row, and never held in memory: the bytes
  are skipped up to the end of the line where the limit was crossed, and reading resumes there;
- a record that is not valid UTF-8 is rejected as a row, with the file byte offset of the first bad
  byte;
- a record whose number of fields differs from the header's is rejected as a row.

Lines that are plain records (the vast majority) are recognized column-wise with numpy, a buffer at a
time; only a line with a quote, a non-UTF-8 byte, a wrong field count or a blank goes through the
record-by-record path. Only the surviving records reach Arrow's reader, as one contiguous buffer
per chunk, so Arrow still does the actual field parsing (quotes, escaped quotes, CRLF) at its speed.
The check that Arrow returned exactly one row per record keeps the row numbers honest; if that ever fails, the chunk is
parsed record by record with Python's csv module instead.

Memory: one read block (`block_bytes`) plus at most one record under construction (bounded by
`max_record_bytes`) plus the chunk being assembled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

DEFAULT_MAX_RECORD_BYTES = 1 << 20
BLOCK_BYTES = 4 << 20
_NEWLINE, _QUOTE, _COMMA = 10, 34, 44
_QUOTED_BODY = re.compile(rb'(?:[^"]+|"")*')  # inside quotes: anything but a lone quote
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class RecordProblem:
    row_no: int
    reason: str
    value: str


@dataclass
class RecordBatch:
    """Consecutive records of a file: `data` holds the readable ones back to back (each ending in a
    newline), `row_no` their 1-based data row numbers; `problems` the rows rejected while splitting."""

    data: bytes
    offsets: list[int] = field(default_factory=list)  # start of each record in `data`, plus the end
    row_no: list[int] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.row_no) + len(self.problems)


class HeaderError(Exception):
    """The first line cannot be a header (too long, not UTF-8, or no line at all)."""


def preview(raw: bytes, limit: int = 120) -> str:
    """A short printable extract of raw bytes, for reasons and rejects files."""
    text = raw[:limit].decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    text = text.replace("\x00", "\\x00").replace("\r", "\\r")
    return text + (f"... ({len(raw):,} bytes)" if len(raw) > limit else "")


def scan_fields(buf: bytes, pos: int, end: int, in_quote: bool) -> tuple[bool, int]:
    """Scan `buf[pos:end]` (one physical line, no newline) starting in or out of a quoted field.
    Returns whether the line ends inside a quoted field, and the commas that separate fields.
    Outside quotes only a quote at a field start matters, so it jumps from `,"` to `,"` (C speed)."""
    commas = 0
    if not in_quote and pos < end and buf[pos] == _QUOTE:
        pos, in_quote = pos + 1, True
    while True:
        if in_quote:
            pos = _QUOTED_BODY.match(buf, pos, end).end()
            if pos >= end:
                return True, commas
            pos += 1  # the closing quote; whatever follows up to the comma stays in the field
            in_quote = False
        opening = buf.find(b',"', pos, end)
        if opening < 0:
            return False, commas + buf.count(b",", pos, end)
        commas += buf.count(b",", pos, opening) + 1
        pos, in_quote = opening + 2, True


class RecordSplitter:
    """Iterates the records of a CSV file; the first record is the header (`header()`)."""

    def __init__(
        self,
        handle: BinaryIO,
        fields: int | None = None,
        *,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        block_bytes: int = BLOCK_BYTES,
    ):
        self.handle, self.fields = handle, fields
        self.max_record_bytes, self.block_bytes = max_record_bytes, block_bytes
        self.file_offset = 0  # file offset of buf[0]
        self.buf = b""
        self.pos = 0  # start of the unread part of buf
        self.eof = False
        self.next_row = 0  # the header is record 0
        self._window = 64 << 10  # bytes the fast path looks at next (see `_plain_lines`)

    # --- reading ----------------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Append one block to the buffer; False at end of file."""
        if self.eof:
            return False
        block = self.handle.read(self.block_bytes)
        if not block:
            self.eof = True
            return False
        if self.file_offset == 0 and not self.buf and block.startswith(UTF8_BOM):
            block, self.file_offset = block[len(UTF8_BOM) :], len(UTF8_BOM)
        # Keep only the unread part: the buffer never grows beyond one record plus one block.
        self.file_offset += self.pos
        self.buf = self.buf[self.pos :] + block
        self.pos = 0
        return True

    def _skip_line(self, start: int) -> int:
        """Drop bytes from `start` to the end of the current line (reading on as needed, keeping
        nothing); returns the number of bytes dropped."""
        dropped = 0
        while True:
            nl = self.buf.find(b"\n", start)
            if nl >= 0:
                dropped += nl + 1 - start
                self.pos = nl + 1
                return dropped
            dropped += len(self.buf) - start
            self.pos = len(self.buf)
            if not self._fill():
                return dropped
            start = 0

    # --- records ----------------------------------------------------------------------------------
    def records(self) -> Iterator[tuple[int, int, bytes | None, str | None]]:
        """(row number, file offset, record bytes or None, problem or None) for every record."""
        while True:
            found = self._next_record()
            if found is None:
                return
            yield found

    def _next_record(self):
        """The next record from the buffer, reading blocks as needed."""
        in_quote, commas = False, 0
        start = scan_from = self.pos
        while True:
            buf = self.buf
            nl = buf.find(b"\n", scan_from)
            end = nl if nl >= 0 else len(buf)
            if nl < 0 and not self.eof:
                if end - start > self.max_record_bytes:
                    return self._too_long(start, scan_from)
                if self._fill():  # the buffer was compacted: positions move back by `start`
                    scan_from -= start
                    start = 0
                    continue
            if nl < 0 and end == start:
                return None  # end of file
            line_end = end - 1 if end > scan_from and buf[end - 1] == 13 else end  # CR of CRLF
            if not in_quote and line_end == start:  # a blank line between records: not a row
                self.pos = start = scan_from = end + 1 if nl >= 0 else end
                continue
            line_open, line_commas = (
                scan_fields(buf, scan_from, end, in_quote)
                if (in_quote or buf.find(b'"', scan_from, end) >= 0)
                else (False, buf.count(b",", scan_from, end))
            )
            commas += line_commas
            in_quote = line_open
            if end + 1 - start > self.max_record_bytes:
                return self._too_long(start, scan_from)
            if in_quote and nl >= 0:
                scan_from = nl + 1  # a line break inside a quoted field: the record goes on
                continue
            record = buf[start : end + 1] if nl >= 0 else buf[start:end] + b"\n"
            offset = self.file_offset + start
            self.pos = end + 1 if nl >= 0 else end
            row = self._row()
            if in_quote:
                return (
                    row,
                    offset,
                    None,
                    f"unclosed quote: the quoted field runs to the end of the file ({preview(record)})",
                )
            try:
                record.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    row,
                    offset,
                    None,
                    (
                        f"not UTF-8 text: byte 0x{record[exc.start]:02x} at byte offset "
                        f"{offset + exc.start:,} of the file ({preview(record)})"
                    ),
                )
            if self.fields is not None and commas + 1 != self.fields:
                return (
                    row,
                    offset,
                    None,
                    (
                        f"has {commas + 1} fields, the header has {self.fields} (a stray comma "
                        f"or a broken quote?): {preview(record)}"
                    ),
                )
            return row, offset, record, None

    def _too_long(self, start: int, line_start: int):
        offset = self.file_offset + start
        head = self.buf[start : start + 120]
        row = self._row()
        dropped = line_start - start + self._skip_line(line_start)
        return (
            row,
            offset,
            None,
            (
                f"line longer than the limit of {self.max_record_bytes:,} bytes "
                f"({dropped:,} bytes skipped from byte offset {offset:,}, starting {preview(head)})"
            ),
        )

    def _row(self) -> int:
        row = self.next_row
        self.next_row += 1
        return row

    def header(self) -> str:
        """The first record, decoded; `HeaderError` when there is none or it is unreadable."""
        found = self._next_record()
        if found is None:
            raise HeaderError("empty file (no header row)")
        _, _, record, problem = found
        if record is None:
            raise HeaderError(f"header row unreadable: {problem}")
        return record.decode("utf-8").rstrip("\r\n")

    def batches(self, chunk_rows: int, chunk_bytes: int = 32 << 20) -> Iterator[RecordBatch]:
        """The data records in batches of at most `chunk_rows` rows (and about `chunk_bytes`)."""
        pieces: list[bytes] = []
        batch, size = RecordBatch(b""), 0
        while True:
            taken = self._plain_lines(chunk_rows - batch.rows, batch, size) if self.fields else None
            if taken is not None:
                pieces.append(taken)
                size += len(taken)
            else:
                found = self._next_record()
                if found is None:
                    break
                row, _, record, problem = found
                if record is None:
                    batch.problems.append(RecordProblem(row, problem, ""))
                else:
                    batch.offsets.append(size)
                    batch.row_no.append(row)
                    pieces.append(record)
                    size += len(record)
            if batch.rows >= chunk_rows or size >= chunk_bytes:
                batch.data = b"".join(pieces)
                batch.offsets.append(size)
                yield batch
                pieces, batch, size = [], RecordBatch(b""), 0
        if batch.rows:
            batch.data = b"".join(pieces)
            batch.offsets.append(size)
            yield batch

    def _plain_lines(self, room: int, batch: RecordBatch, size: int) -> bytes | None:
        """Fast path, column-wise over the buffered complete lines: the leading run of lines that are
        plain records (no quote, valid UTF-8, not blank, the header's number of fields, within the
        limit) is taken in one piece. None when the next line needs the record-by-record path."""
        buf, pos = self.buf, self.pos
        # The window adapts: it doubles while whole windows are plain, and shrinks after a line that is
        # not, so a file with many broken lines is not rescanned a full buffer per broken line.
        end = buf.rfind(b"\n", pos, pos + self._window) + 1 or buf.rfind(b"\n", pos) + 1
        quote = buf.find(b'"', pos, end)
        stopped = quote >= 0
        if stopped:  # stop before the line with the quote
            end = buf.rfind(b"\n", pos, quote) + 1
        if end <= pos or room <= 0:
            self._window = 4 << 10
            return None
        view = memoryview(buf)[pos:end]
        data = np.frombuffer(view, dtype=np.uint8)
        if data.max() >= 0x80:  # not ASCII: stop before the first line that is not UTF-8
            try:
                str(view, "utf-8")
            except UnicodeDecodeError as exc:
                stopped = True
                end = buf.rfind(b"\n", pos, pos + exc.start) + 1
                if end <= pos:
                    self._window = 4 << 10
                    return None
                view, data = view[: end - pos], data[: end - pos]
        newlines = np.flatnonzero(data == _NEWLINE)[:room]
        starts = np.concatenate(([0], newlines[:-1] + 1))
        commas = np.flatnonzero(data == _COMMA)
        fields = np.searchsorted(commas, newlines) - np.searchsorted(commas, starts) + 1
        length = newlines + 1 - starts
        blank = (length == 1) | ((length == 2) & (data[np.maximum(newlines - 1, 0)] == 13))
        plain = (fields == self.fields) & (length <= self.max_record_bytes) & ~blank
        count = int(np.argmin(plain)) if not plain.all() else len(plain)
        if count == len(plain) and not stopped:
            self._window = min(self._window * 2, 16 << 20)
        else:
            self._window = max(4 << 10, taken_hint(newlines, count))
        if count == 0:
            return None
        taken = int(newlines[count - 1]) + 1
        batch.offsets.extend((starts[:count] + size).tolist())
        batch.row_no.extend(range(self.next_row, self.next_row + count))
        self.next_row += count
        self.pos = pos + taken
        return bytes(view[:taken])


def taken_hint(newlines: np.ndarray, count: int) -> int:
    """Twice the bytes of the plain lines just taken: the next window's size after a stop."""
    return 2 * (int(newlines[count - 1]) + 1) if count else 0
