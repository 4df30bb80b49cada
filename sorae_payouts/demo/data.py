"""Realistic, deterministic demo input files: one month of affiliates, commissions and order events.

The files look like what Sorae's order system exports at month end, so the import and payout steps
can be exercised without production data: several payout currencies including a zero-decimal one
(jpy), affiliates who have not yet connected a Stripe account, a long tail of small earners who end
the month below the minimum payout, and late cancellations/reversals (some after the month closed,
inside the holding window). The same seed always writes the same bytes, whatever `chunk_rows` is.

Scale: the numeric columns are drawn up front as integer numpy arrays (~40 bytes per commission);
strings exist only one chunk at a time, built with Arrow compute kernels and streamed to the file.
Money is integer minor units throughout; amount strings are assembled from `//` and `%` of integers.

With `program_id`, every file starts with a `program_id` column naming it (files of several programs
import without `--program`); without it the files are exactly the single-program files they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sorae_payouts.core.money import exponent
from sorae_payouts.core.periods import parse_period, period_end, period_key

# (payout currency, share of affiliates, the UTC offset their local exports use when not in Z)
CURRENCY_MIX = (("usd", 0.60, "-05:00"), ("eur", 0.25, "+01:00"), ("jpy", 0.15, "+09:00"))
# Sorae's minimum monthly payout; below it the balance carries over to the next month.
MINIMUM_PAYOUT_MINOR = {"usd": 5000, "eur": 5000, "jpy": 5000}  # 50.00 usd, 50.00 eur, 5000 jpy
COMMISSION_MINOR_RANGE = (50, 8000)  # 0.50-80.00 usd/eur, 50-8000 jpy (log-uniform in between)
EVENT_KIND_MIX = (("cancellation", 0.40), ("reversal", 0.30), ("partial_reversal", 0.30))
WITHOUT_ACCOUNT_SHARE = 0.08  # affiliates who have not finished Stripe Connect onboarding
LOCAL_OFFSET_SHARE = 0.25  # timestamps written with the affiliate's local offset instead of Z
EVENT_GRACE_DAYS = 4  # order events may arrive up to this many days after the month ends
_ALPHANUMERIC = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
# Given and family names per payout region (usd, eur, jpy), ASCII so they double as e-mail parts.
_NAMES = (
    (
        "James Mary Robert Patricia Michael Jennifer David Linda Maria Carlos Aisha Kevin",
        "Smith Johnson Williams Brown Jones Garcia Miller Davis Lopez Wilson Nguyen Patel",
    ),
    (
        "Lukas Emma Mateo Sofia Lucas Chloe Jan Anna Pierre Lea Marco Giulia",
        "Muller Martin Rossi Garcia Schmidt Dubois Novak Jansen Bernard Costa Weber Moreau",
    ),
    (
        "Haruto Yui Sota Hina Yuto Aoi Ren Sakura Kaito Mei Riku Yuna",
        "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida Yamada",
    ),
)
_AFFILIATE_COLUMNS = ("affiliate_id", "name", "email", "stripe_account_id", "currency")
_COMMISSION_COLUMNS = ("commission_id", "affiliate_id", "order_id", "amount", "currency", "earned_at")
_EVENT_COLUMNS = ("event_id", "order_id", "kind", "amount", "occurred_at")


@dataclass
class DemoDataFiles:
    """Where the three input files were written, and what they contain (`summary`, plain ints)."""

    affiliates: Path
    commissions: Path
    order_events: Path
    summary: dict = field(default_factory=dict)


def default_month(today: date | None = None) -> str:
    """The last complete calendar month in UTC ("2026-09" on any day of October 2026)."""
    today = today or datetime.now(UTC).date()
    return period_key((today.replace(day=1) - timedelta(days=1)).replace(day=1))


def write_demo_data(
    out_dir: Path,
    *,
    affiliates: int = 200,
    commissions: int = 5_000,
    month: str | None = None,
    seed: int = 7,
    file_format: str = "csv",
    event_share: float = 0.05,
    chunk_rows: int = 250_000,
    program_id: str | None = None,
) -> DemoDataFiles:
    """Write affiliates, commissions and order-events files for `month` (default: last complete month).

    Every commission is in its affiliate's payout currency and earned inside the month (UTC); about
    `event_share` of them get exactly one order event after they were earned. Returns the paths
    and a summary whose totals are computed from the same integers the amount strings came from.
    `program_id`: also write a first column `program_id` with this value on every row (and in the summary).
    """
    if affiliates < 1 or commissions < 0 or not 0 <= event_share <= 1 or chunk_rows < 1:
        raise ValueError("need affiliates >= 1, commissions >= 0, 0 <= event_share <= 1, chunk_rows >= 1")
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file_format must be 'csv' or 'parquet', not {file_format!r}")
    if program_id is not None and not _is_program_id(program_id):
        raise ValueError(f"program_id {program_id!r} is not a program id (lowercase letters, digits, - and _)")
    period = parse_period(month or default_month())
    start = int(datetime(period.year, period.month, 1, tzinfo=UTC).timestamp())
    end = int(period_end(period).timestamp())
    rng = np.random.default_rng(seed)
    currencies = [c for c, _, _ in CURRENCY_MIX]

    # Affiliates: exact currency mix, exact share not onboarded, long-tailed activity weights.
    aff_cur = _shuffled_labels(rng, _apportion(affiliates, [s for _, s, _ in CURRENCY_MIX]))
    no_account = np.zeros(affiliates, bool)
    no_account[rng.choice(affiliates, _at_least_one(affiliates * WITHOUT_ACCOUNT_SHARE, affiliates), replace=False)] = (
        True
    )
    given, family = _pick_names(rng, aff_cur)
    tokens = _random_tokens(rng, affiliates)
    weights = rng.lognormal(0.0, 1.5, affiliates)
    per_affiliate = rng.multinomial(commissions, weights / weights.sum())

    # Commissions, numbered in earned_at order; order numbers are shuffled so they differ from them.
    com_aff = np.repeat(np.arange(affiliates, dtype=np.int32), per_affiliate)
    lo, hi = np.log(COMMISSION_MINOR_RANGE[0]), np.log(COMMISSION_MINOR_RANGE[1] + 1)
    com_minor = np.minimum(np.exp(rng.uniform(lo, hi, commissions)).astype(np.int64), COMMISSION_MINOR_RANGE[1])
    earned = rng.integers(start, end, commissions)
    by_time = np.argsort(earned, kind="stable")
    com_aff, com_minor, earned = com_aff[by_time], com_minor[by_time], earned[by_time]
    com_cur = aff_cur[com_aff]
    order_no = (rng.permutation(commissions) + 1).astype(np.int32)
    com_zone = np.where(rng.random(commissions) < LOCAL_OFFSET_SHARE, com_cur + 1, 0)

    # Order events: one per chosen order, after the commission was earned, up to the grace days.
    n_events = round(commissions * event_share)
    ev_com = rng.choice(commissions, n_events, replace=False)
    ev_kind = _shuffled_labels(rng, _apportion(n_events, [s for _, s in EVENT_KIND_MIX]))
    occurred = earned[ev_com] + rng.integers(600, end + EVENT_GRACE_DAYS * 86400 - earned[ev_com])
    ev_minor = com_minor[ev_com]
    partial = ev_kind == 2
    ev_minor[partial] = rng.integers(np.maximum(1, ev_minor[partial] // 10), ev_minor[partial])
    by_time = np.argsort(occurred, kind="stable")
    ev_com, ev_kind, occurred, ev_minor = ev_com[by_time], ev_kind[by_time], occurred[by_time], ev_minor[by_time]
    ev_zone = np.where(rng.random(n_events) < LOCAL_OFFSET_SHARE, com_cur[ev_com] + 1, 0)

    aff_width, com_width, evt_width = _width(affiliates, 6), _width(commissions, 7), _width(n_events, 6)
    stamp = _TimestampFormatter(period, start)
    currency_names = pa.array(currencies)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{file_format}" for name in ("affiliates", "commissions", "order_events")]

    def affiliate_rows(rows: slice) -> list[pa.Array]:
        number = np.arange(affiliates)[rows] + 1
        first, last = given[rows], family[rows]
        email = pc.binary_join_element_wise(pc.utf8_lower(first), pc.utf8_lower(last), ".")
        email = pc.binary_join_element_wise(email, _text(number), "@example.com", "")
        account = pc.binary_join_element_wise("acct", tokens[rows], "_")
        account = pc.if_else(pa.array(no_account[rows]), pa.scalar(None, pa.string()), account)
        name = pc.binary_join_element_wise(first, last, " ")
        return [_ids("aff", number, aff_width), name, email, account, currency_names.take(aff_cur[rows])]

    def commission_rows(rows: slice) -> list[pa.Array]:
        cur = com_cur[rows]
        return [
            _ids("com", np.arange(commissions)[rows] + 1, com_width),
            _ids("aff", com_aff[rows] + 1, aff_width),
            _ids("ord", order_no[rows], com_width),
            _amounts(com_minor[rows], cur, currencies),
            currency_names.take(cur),
            stamp(earned[rows], com_zone[rows]),
        ]

    def event_rows(rows: slice) -> list[pa.Array]:
        com, kind = ev_com[rows], ev_kind[rows]
        amount = _amounts(ev_minor[rows], com_cur[com], currencies)
        amount = pc.if_else(pa.array(kind == 2), amount, pa.scalar(None, pa.string()))
        return [
            _ids("evt", np.arange(n_events)[rows] + 1, evt_width),
            _ids("ord", order_no[com], com_width),
            pa.array([k for k, _ in EVENT_KIND_MIX]).take(kind),
            amount,
            stamp(occurred[rows], ev_zone[rows]),
        ]

    for path, columns, total, build in (
        (paths[0], _AFFILIATE_COLUMNS, affiliates, affiliate_rows),
        (paths[1], _COMMISSION_COLUMNS, commissions, commission_rows),
        (paths[2], _EVENT_COLUMNS, n_events, event_rows),
    ):
        if program_id is not None:
            columns, build = ("program_id", *columns), _with_program(program_id, build)
        _write_chunked(path, file_format, columns, total, chunk_rows, build)

    gross = np.zeros(affiliates, np.int64)
    np.add.at(gross, com_aff, com_minor)
    summary = {
        "month": period_key(period),
        "seed": seed,
        "file_format": file_format,
        "affiliates": affiliates,
        "affiliates_without_account": int(no_account.sum()),
        "affiliates_by_currency": _per_currency(currencies, aff_cur, np.ones(affiliates, np.int64)),
        "affiliates_without_commissions": int((per_affiliate == 0).sum()),
        "minimum_payout_minor": dict(MINIMUM_PAYOUT_MINOR),
        "affiliates_below_minimum_by_currency": _per_currency(
            currencies, aff_cur, ((per_affiliate > 0) & (gross < _minimums(currencies)[aff_cur])).astype(np.int64)
        ),
        "commissions": commissions,
        "commissions_by_currency": _per_currency(currencies, com_cur, np.ones(commissions, np.int64)),
        "gross_minor_by_currency": _per_currency(currencies, com_cur, com_minor),
        "events": n_events,
        "events_by_kind": {k: int((ev_kind == i).sum()) for i, (k, _) in enumerate(EVENT_KIND_MIX)},
        "events_after_month": int((occurred >= end).sum()),
        "reversed_minor_by_currency": _per_currency(currencies, com_cur[ev_com], ev_minor),
    }
    if program_id is not None:
        summary["program_id"] = program_id
    return DemoDataFiles(*paths, summary=summary)


def _apportion(total: int, shares: list[float]) -> np.ndarray:
    """Split `total` by `shares` exactly (largest remainder), every share getting one when total allows."""
    raw = np.asarray(shares, float) / np.sum(shares) * total
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(counts - raw, kind="stable")[: total - counts.sum()]] += 1
    for i in np.flatnonzero(counts == 0):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _shuffled_labels(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Labels 0..k-1, `counts[i]` of label i, in random order (exact mix, random placement)."""
    return rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int8), counts))


def _at_least_one(expected: float, population: int) -> int:
    return min(population - 1, max(1, round(expected))) if population > 1 else 0


def _width(count: int, minimum: int) -> int:
    return max(minimum, len(str(count)))


def _text(numbers: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(numbers, np.int64)), pa.string())


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Stable ids like aff_000001: prefix, underscore, zero-padded number."""
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(_text(numbers), width, "0"), "_")


def _amounts(minor: np.ndarray, cur: np.ndarray, currencies: list[str]) -> pa.Array:
    """Major-unit decimal strings with exactly the currency's decimals, from integer minor units."""
    places = np.array([exponent(c) for c in currencies])[cur]
    result = pa.nulls(len(minor), pa.string())
    for p in np.unique(places).tolist():
        text = (
            _text(minor)
            if p == 0
            else pc.binary_join_element_wise(_text(minor // 10**p), pc.utf8_lpad(_text(minor % 10**p), p, "0"), ".")
        )
        result = pc.if_else(pa.array(places == p), text, result)
    return result


class _TimestampFormatter:
    """ISO 8601 strings from epoch seconds via lookup tables (fast): zone 0 is Z, zone i+1 is the
    local offset of CURRENCY_MIX[i], in which case the wall clock shifts (possibly across the month)."""

    def __init__(self, period: date, start: int):
        self.start = start
        first = np.datetime64(period, "D")
        self.days = pa.array(np.datetime_as_string(first + np.arange(-2, 40), unit="D"))
        sod = np.arange(86400)
        hh, mm, ss = (pc.utf8_lpad(_text(v), 2, "0") for v in (sod // 3600, sod // 60 % 60, sod % 60))
        self.clock = pc.binary_join_element_wise(hh, mm, ss, ":")
        self.suffix = pa.array(["Z"] + [offset for _, _, offset in CURRENCY_MIX])
        self.shift = np.array([0] + [_offset_seconds(offset) for _, _, offset in CURRENCY_MIX])

    def __call__(self, seconds: np.ndarray, zone: np.ndarray) -> pa.Array:
        local = seconds - self.start + self.shift[zone]
        day = self.days.take(local // 86400 + 2)
        clock = self.clock.take(local % 86400)
        return pc.binary_join_element_wise(pc.binary_join_element_wise(day, clock, "T"), self.suffix.take(zone), "")


def _offset_seconds(offset: str) -> int:
    sign = -1 if offset[0] == "-" else 1
    return sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)


def _pick_names(rng: np.random.Generator, cur: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Given and family names from the affiliate's payout region."""
    picked = []
    for part in (0, 1):
        lists = [names[part].split() for names in _NAMES]
        pool = pa.array([n for names in lists for n in names])
        offsets = np.cumsum([0] + [len(n) for n in lists])[:-1]
        picked.append(pool.take(offsets[cur] + rng.integers(0, np.array([len(n) for n in lists])[cur])))
    return picked[0], picked[1]


def _random_tokens(rng: np.random.Generator, count: int, length: int = 16) -> pa.Array:
    """`count` random alphanumeric strings, like the tail of a Stripe account id."""
    chars = np.ascontiguousarray(_ALPHANUMERIC[rng.integers(0, len(_ALPHANUMERIC), (count, length))])
    return pa.array(chars.view(f"S{length}").ravel()).cast(pa.string())


def _minimums(currencies: list[str]) -> np.ndarray:
    return np.array([MINIMUM_PAYOUT_MINOR[c] for c in currencies], np.int64)


def _per_currency(currencies: list[str], cur: np.ndarray, values: np.ndarray) -> dict[str, int]:
    """Integer sums per currency (np.bincount would go through floats; add.at stays in int64)."""
    totals = np.zeros(len(currencies), np.int64)
    np.add.at(totals, cur, values.astype(np.int64))
    return {c: int(t) for c, t in zip(currencies, totals, strict=False)}


def _is_program_id(program_id: str) -> bool:
    from sorae_payouts.registry.programs import (
        PROGRAM_ID,
    )  # here: the registry's module loads SQLAlchemy (CLI start-up)

    return bool(PROGRAM_ID.fullmatch(program_id))


def _with_program(program_id: str, build):
    """`build` with a first column naming the program on every row."""

    def with_program(rows: slice) -> list[pa.Array]:
        columns = build(rows)
        return [pa.repeat(pa.scalar(program_id, pa.string()), len(columns[0])), *columns]

    return with_program


def _write_chunked(path: Path, file_format: str, columns: tuple[str, ...], total: int, chunk_rows: int, build) -> None:
    """Stream `total` rows to `path`, `chunk_rows` at a time; all columns are strings (nulls = empty)."""
    schema = pa.schema([(c, pa.string()) for c in columns])
    if file_format == "csv":
        # No quoting, like a hand-made export; Arrow raises if a value ever needed quotes.
        options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
        writer = pacsv.CSVWriter(path, schema, write_options=options)
    else:
        writer = pq.ParquetWriter(path, schema)
    with writer:
        if total == 0:
            writer.write_table(schema.empty_table())
        for begin in range(0, total, chunk_rows):
            writer.write_table(pa.Table.from_arrays(build(slice(begin, begin + chunk_rows)), schema=schema))
