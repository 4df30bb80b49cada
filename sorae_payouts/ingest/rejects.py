"""The rejects file: every problem of every rejected row, next to the input, for whoever fixes it.

`<input stem>.rejects.csv` starts with one `#` line saying what the row numbers mean (read it with
`skiprows=1`), then a header `row, column, reason, value` followed by the raw fields of the row as
read (`program_id` first when the file has that column; files without it get exactly the columns they
always got). Rows are in file order; a row with several problems has several lines. Cells are written
through `csv_safe`: a raw field such as `=HYPERLINK(...)` appears as `'=HYPERLINK(...)`.

The file is written to a temporary name while the import's transaction is open and renamed into
place only once the transaction has committed, so a rejects file always describes an import that
happened. A later clean import of the same file removes a stale rejects file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sorae_payouts.core.csv_safe import write_comment, write_frame
from sorae_payouts.ingest.model import MAX_REJECTS_IN_MEMORY, RejectedRow
from sorae_payouts.ingest.staging import REJECT, STAGE, StagingArea

# Rejects are written a page at a time; a page of raw rows as Python strings is the memory cost.
PAGE_ROWS = 50_000


@dataclass
class RejectsSummary:
    head: list[RejectedRow]
    count: int
    rows: int
    written: Path | None  # the temporary file, None when nothing was rejected


def rejects_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")


def write_rejects(db: StagingArea, path: Path, temporary: Path) -> RejectsSummary:
    """Stream all rejects, joined with their raw rows, into `temporary`, a page at a time."""
    count, rows = db.execute(f"SELECT COUNT(*), COUNT(DISTINCT row_no) FROM {REJECT}").one()
    if not count:
        return RejectsSummary([], 0, 0, None)
    db.index_rows()
    raw = ", ".join(f"s.{c}" for c in db.raw_columns)
    head: list[RejectedRow] = []
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        write_comment(
            handle, f"rejects of {path.name}: row = 1-based data row number in that file (header row excluded)"
        )
        header, after = True, (0, 0)
        while True:  # keyset pages of problems, in (row, order found) order
            frame = db.frame(
                f"SELECT r.row_no, r.col, r.reason, r.value, r.seq, {raw} FROM {REJECT} r "
                f"JOIN {STAGE} s ON s.row_no = r.row_no WHERE r.row_no > :row OR (r.row_no = :row AND r.seq > :seq) "
                "ORDER BY r.row_no, r.seq LIMIT :page",
                row=after[0],
                seq=after[1],
                page=min(db.chunk_rows, PAGE_ROWS),
            )
            if frame.empty:
                break
            after = (int(frame["row_no"].iloc[-1]), int(frame["seq"].iloc[-1]))
            frame = frame.drop(columns="seq").rename(columns={"row_no": "row", "col": "column"})
            write_frame(frame, handle, header=header, numeric=("row",))  # no formula reaches a spreadsheet
            header = False
            room = MAX_REJECTS_IN_MEMORY - len(head)
            if room > 0:
                head.extend(
                    RejectedRow(int(r), c, reason, v if isinstance(v, str) else None)
                    for r, c, reason, v in frame[["row", "column", "reason", "value"]]
                    .head(room)
                    .itertuples(index=False)
                )
    return RejectsSummary(head, int(count), int(rows), temporary)
