"""Row-level checks of one chunk, column-wise (no Python loop over rows).

A check marks the rows it fails with a column and a reason; a row can collect several problems and
all of them are reported. Rows with at least one problem are not loaded, but they are still staged
(with their raw fields) so that the cross-row rules can see them: an id that appears once valid and
once broken in the same file is a conflict, not a silent pick of the valid one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from sorae_payouts.core.money import (
    NON_ASCII_DIGITS,
    SUPPORTED_CURRENCIES,
    exponent,
    non_ascii_digits,
    parse_minor_series,
)
from sorae_payouts.core.periods import first_period, period_key

# Column widths of the ledger (String(64)): a longer id would abort the whole load in PostgreSQL.
MAX_ID_LENGTH = 64
# BIGINT holds 9.2e18; 15 integer digits with up to 3 decimals stays well inside it. Anything larger
# is a broken export, and must not reach the integer arithmetic where it would overflow.
MAX_WHOLE_DIGITS = 15
# A zone after a time of day: Z, +02:00, -0500, +02. A bare date such as 2026-10-05 has none.
# Written for pyarrow's RE2 ([0-9] and a literal space, not \d and \s, which make pandas fall back
# to a Python loop over the rows).
_ZONE_PATTERN = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)? ?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
_TOO_PRECISE = "more decimals than the currency allows"
_MONEY_REASONS = {
    "not a plain decimal number like 12.34": "not a plain positive decimal number like 12.34 (no sign, "
    "exponent or thousands separator)",
}


# How far ahead of this machine's clock a timestamp may be: other systems' clocks drift a little.
CLOCK_SKEW = timedelta(hours=1)


@dataclass(frozen=True)
class DateWindow:
    """The instants a commission or order event may carry: from the start of the ledger's first
    period (SORAE_FIRST_PERIOD) to now plus a small clock skew. An older date would open a month
    before the first one, which no month-end can ever finalize (and which then blocks every later
    month); a date in the future is a typo or a broken clock."""

    earliest: datetime
    latest: datetime

    @classmethod
    def at(cls, now: datetime) -> DateWindow:
        first = first_period()
        return cls(datetime(first.year, first.month, 1, tzinfo=UTC), now + CLOCK_SKEW)

    def describe(self) -> str:
        return (
            f"accepted from {self.earliest:%Y-%m-%d} (first period {period_key(self.earliest.date())}, "
            f"SORAE_FIRST_PERIOD) to {self.latest:%Y-%m-%d %H:%M} UTC (now + "
            f"{int(CLOCK_SKEW.total_seconds() // 60)} min clock skew)"
        )


class RowChecks:
    """Collects the problems of the rows of one chunk; `row_no` numbers them in the whole file."""

    def __init__(
        self, chunk: pd.DataFrame, first_row: int = 1, row_no: pd.Series | None = None, window: DateWindow | None = None
    ) -> None:
        self.chunk = chunk
        if row_no is None:
            row_no = pd.Series(np.arange(first_row, first_row + len(chunk), dtype="int64"), index=chunk.index)
        self.row_no = row_no
        self.window = window or DateWindow.at(datetime.now(UTC))
        self._parts: list[pd.DataFrame] = []
        self._bad = pd.Series(False, index=chunk.index)
        self._unreadable: pd.DataFrame | None = None

    def fail(self, mask: pd.Series, column: str, reason: str | pd.Series) -> None:
        """Record `reason` (text, or one per row) against `column` for the rows where `mask` is true."""
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        reasons = reason[mask] if isinstance(reason, pd.Series) else reason
        self._parts.append(
            pd.DataFrame(
                {
                    "row_no": self.row_no[mask],
                    "col": column,
                    "reason": reasons,
                    "value": self.chunk[column][mask],
                }
            )
        )
        self._bad |= mask

    @property
    def ok(self) -> pd.Series:
        return ~self._bad

    def blank(self, column: str) -> pd.Series:
        return self.chunk[column] == ""

    def require(self, *columns: str) -> None:
        for column in columns:
            self.fail(self.blank(column), column, f"missing {column}")

    def no_nul(self, *columns: str) -> None:
        # The database refuses NUL characters in text; catching them here keeps it a row reject.
        for column in columns:
            self.fail(self.chunk[column].str.contains("\x00", regex=False), column, "contains a NUL character")

    def unreadable(self, rows: pd.Series, problems: pd.DataFrame) -> None:
        """`rows` (a mask) could not be read at all: their only problems are `problems` (row_no, col,
        reason, value), whatever the other checks said about their (empty) fields."""
        if rows.any():
            self._bad |= rows
            self._unreadable = problems

    def cell_length(self, limit: int, *columns: str) -> None:
        """Cells longer than `limit` bytes (Parquet has no line limit; a CSV line is already capped)."""
        for column in columns:
            text = self.chunk[column]
            long = text.str.len() > limit // 4  # a character is at most 4 bytes: only these can be too long
            if long.any():
                long[long] = text[long].map(lambda v: len(v.encode("utf-8", "surrogatepass")) > limit)
                self.fail(long, column, f"{column} is longer than the limit of {limit:,} bytes")

    def identifier(self, *columns: str) -> None:
        for column in columns:
            too_long = self.chunk[column].str.len() > MAX_ID_LENGTH
            self.fail(too_long, column, f"{column} is longer than {MAX_ID_LENGTH} characters")

    def currency(self, column: str = "currency") -> pd.Series:
        """Mask of rows with a supported lowercase currency (blank ones are reported by `require`)."""
        text = self.chunk[column]
        known = text.isin(SUPPORTED_CURRENCIES)
        self.fail(
            ~known & (text != ""),
            column,
            "unknown currency (expected a lowercase code Sorae pays in, e.g. usd, eur, jpy)",
        )
        return known

    def amount(self, column: str, currencies: pd.Series, rows: pd.Series) -> pd.Series:
        """Exact integer minor units of `column` in each row's currency, for the `rows` selected
        (rows with a known currency and a non-blank amount); <NA> where it does not parse."""
        text = self.chunk[column]
        minor = pd.Series(pd.NA, index=text.index, dtype="Int64")
        foreign = rows & non_ascii_digits(text)
        self.fail(foreign, column, NON_ASCII_DIGITS)
        rows = rows & ~foreign
        too_large = rows & text.str.match(f"[0-9]{{{MAX_WHOLE_DIGITS + 1}}}")
        self.fail(too_large, column, f"amount too large (more than {MAX_WHOLE_DIGITS} digits before the point)")
        rows = rows & ~too_large
        if rows.any():
            parsed, reason = parse_minor_series(text[rows], currencies[rows])
            reason = reason.map(lambda r: _MONEY_REASONS.get(r, r), na_action="ignore")
            too_precise = (reason == _TOO_PRECISE).fillna(False)
            if too_precise.any():  # say which currency and how many decimals it has
                currency = currencies[rows][too_precise]
                reason[too_precise] = (
                    "more decimals than " + currency + " allows (" + currency.map(exponent).astype("str") + " decimals)"
                )
            self.fail(reason.notna().reindex(text.index, fill_value=False), column, reason.reindex(text.index))
            minor[rows] = parsed
            self.fail(minor == 0, column, "amount must be positive")
        return minor.where(minor > 0)

    def timestamp(self, column: str) -> pd.Series:
        """UTC instants of an ISO 8601 column that must carry a time zone; NaT where rejected."""
        text = self.chunk[column]
        foreign = non_ascii_digits(text)
        self.fail(foreign, column, NON_ASCII_DIGITS)
        present = (text != "") & ~foreign
        moment = pd.to_datetime(text.where(present), utc=True, format="ISO8601", errors="coerce")
        moment = moment.astype("datetime64[us, UTC]")
        unparseable = present & moment.isna()
        self.fail(unparseable, column, "not an ISO 8601 timestamp like 2026-10-05T12:00:00Z")
        naive = present & ~unparseable & ~text.str.contains(_ZONE_PATTERN, regex=True)
        self.fail(
            naive,
            column,
            "timestamp has no time zone (naive); write it like 2026-10-05T12:00:00Z or 2026-10-05T14:00:00+02:00",
        )
        outside = (
            present
            & ~unparseable
            & ~naive
            & ((moment < self.window.earliest) | (moment > self.window.latest)).fillna(False)
        )
        self.fail(outside, column, f"{column} outside the plausible window: {self.window.describe()}")
        return moment.where(~naive & ~outside & ~foreign)

    def rejects(self) -> pd.DataFrame:
        """All problems of the chunk, in row order and, within a row, in the order they were found."""
        parts = self._parts
        if self._unreadable is not None:  # their fields were blanks standing in for an unreadable line
            skip = set(self._unreadable["row_no"].tolist())
            parts = [p[~p["row_no"].isin(skip)] for p in parts] + [self._unreadable]
        if not parts:
            return pd.DataFrame(columns=["row_no", "col", "reason", "value"])
        found = pd.concat(parts, ignore_index=True).sort_values("row_no", kind="stable")
        found["value"] = _visible_nul(found["value"])
        found["reason"] = _visible_nul(found["reason"])
        return found

    def stage_frame(self, parsed: pd.DataFrame) -> pd.DataFrame:
        """Raw fields + row number + ok flag + parsed values (nulled on rejected rows) for staging.

        `raw_key` (all raw fields joined) is set only on rejected rows: it lets the duplicate rule
        tell two identical broken rows from two different versions of one id.
        """
        ok = self.ok
        frame = self.chunk.copy()
        for column in frame.columns:  # PostgreSQL refuses NUL in text; such rows are rejected (`no_nul`)
            frame[column] = _visible_nul(frame[column])
        frame.insert(0, "row_no", self.row_no)
        frame.insert(1, "ok", ok.astype("int64"))
        raw_key = pd.Series(None, index=frame.index, dtype="str")
        if (~ok).any():
            bad = self.chunk[~ok]
            raw_key[~ok] = bad.iloc[:, 0].str.cat([bad[c] for c in bad.columns[1:]], sep="\x1f")
        frame.insert(2, "raw_key", raw_key)
        for name in parsed.columns:
            frame[name] = parsed[name].where(ok)
        return frame


def _visible_nul(values: pd.Series) -> pd.Series:
    """NUL characters written as the four characters \\x00, so a rejected raw field can be stored and shown."""
    if values.dtype == object:
        return values.map(lambda v: v.replace("\x00", "\\x00") if isinstance(v, str) and "\x00" in v else v)
    has = values.str.contains("\x00", regex=False).fillna(False)
    return values.where(~has, values.str.replace("\x00", "\\x00", regex=False)) if has.any() else values
