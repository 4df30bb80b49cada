"""Reading back CSV files this program wrote: is any cell one a spreadsheet would evaluate?"""

from __future__ import annotations

import csv
import re
from pathlib import Path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def evaluable_cells(path: Path, numeric: tuple[str, ...] = ()) -> list[tuple[int, str, str]]:
    """(line, column, cell) of every cell that begins like a formula; plain numbers in `numeric`
    columns are fine. A leading `#` line is read as a row of its own."""
    found = []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = next((r for r in rows if r and not r[0].startswith("#")), [])
    for line, row in enumerate(rows, start=1):
        for i, cell in enumerate(row):
            column = header[i] if i < len(header) else f"#{i}"
            if cell.startswith(FORMULA_STARTS) and not (column in numeric and _PLAIN_NUMBER.fullmatch(cell)):
                found.append((line, column, cell))
    return found
