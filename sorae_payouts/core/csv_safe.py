"""The one way this program writes CSV: no cell a spreadsheet would evaluate leaves it.

Operators open exports and rejects files in a spreadsheet, and their cells carry text from input
files (affiliate ids, names, raw rejected fields). A cell beginning with `=`, `+`, `-`, `@`, a tab or a
carriage return is a formula to Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)`,
`+cmd|' /C calc'!A0`, `@SUM(1+1)`): following OWASP's rule, such a cell is written with a leading
single quote, which the spreadsheet shows as text and never evaluates.

Columns this program computed itself as numbers (`numeric`, e.g. `amount_minor`) are left alone when
the value is a plain number, so a negative amount stays a number; anything else in them is
neutralized like any other cell.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas costs ~0.25 s to import: only the frame writers need it (CLI start-up)
    import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_STARTS_PATTERN = r"^[=+\-@\t\r]"


def safe_cell(value: Any, numeric: bool = False) -> Any:
    """`value` as it may be written: None stays empty, a formula-looking text gets a leading quote."""
    if value is None:
        return None
    if numeric and ((isinstance(value, int) and not isinstance(value, bool)) or _PLAIN_NUMBER.fullmatch(str(value))):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def safe_frame(frame: pd.DataFrame, numeric: Iterable[str] = ()) -> pd.DataFrame:
    """Column-wise `safe_cell` for frames written with `write_frame`."""
    import pandas as pd

    numeric = set(numeric)
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if column in numeric and (pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values)):
            continue
        present = values.notna()
        text = values[present].astype("str")
        risky = text.str.contains(_STARTS_PATTERN, regex=True)
        if column in numeric:
            risky &= ~text.str.fullmatch(_PLAIN_NUMBER.pattern)
        if risky.any():
            out[column] = values.astype("object")
            out.loc[risky[risky].index, column] = "'" + text[risky]
    return out


def write_frame(frame: pd.DataFrame, handle: IO[str], *, header: bool, numeric: Iterable[str] = ()) -> None:
    """Append `frame` to an open CSV file, neutralized."""
    safe_frame(frame, numeric).to_csv(
        handle, header=[safe_cell(c) for c in frame.columns] if header else False, index=False
    )


def write_comment(handle: IO[str], text: str) -> None:
    """A leading `# ...` line, written as one quoted-if-needed cell (a file name may contain commas)."""
    csv.writer(handle).writerow([safe_cell("# " + text)])


class SafeDictWriter:
    """`csv.DictWriter` with every cell neutralized (except plain numbers in `numeric` columns)."""

    def __init__(self, handle: IO[str], fieldnames: list[str], numeric: Iterable[str] = ()):
        self.fieldnames = fieldnames
        self.numeric = set(numeric)
        self.writer = csv.writer(handle)

    def writeheader(self) -> None:
        self.writer.writerow([safe_cell(name) for name in self.fieldnames])

    def writerow(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow([safe_cell(row.get(name), name in self.numeric) for name in self.fieldnames])
