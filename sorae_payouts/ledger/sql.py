"""Small portable SQL helpers: the same statement text runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import sqlalchemy as sa

# Bind parameters with these names are typed, so SQLAlchemy stores dates and timestamps in the one
# format each backend's columns use (SQLite keeps them as text: a raw driver bind would not match).
_PARAM_TYPES = {
    "period": sa.Date(),
    "prev_period": sa.Date(),
    "now": sa.DateTime(timezone=True),
}
_PARAM_RE = re.compile(r"(?<![:\w]):(\w+)")


def text(statement: str) -> sa.TextClause:
    """`sa.text` with the well-known parameter names typed (see `_PARAM_TYPES`)."""
    names = set(_PARAM_RE.findall(statement)) & _PARAM_TYPES.keys()
    return sa.text(statement).bindparams(*(sa.bindparam(n, type_=_PARAM_TYPES[n]) for n in sorted(names)))


def least(a: str, b: str) -> str:
    """min(a, b) for two scalar expressions: SQLite has no LEAST(), PostgreSQL no scalar MIN()."""
    return f"(CASE WHEN ({a}) < ({b}) THEN ({a}) ELSE ({b}) END)"


def case_map(column: str, mapping: dict[str, int], default: int, prefix: str) -> tuple[str, dict]:
    """`CASE column WHEN :p0 THEN :v0 ... ELSE :default END` with bound parameters."""
    params: dict = {f"{prefix}_default": default}
    whens = []
    for i, (key, value) in enumerate(sorted(mapping.items())):
        params[f"{prefix}_k{i}"], params[f"{prefix}_v{i}"] = key, value
        whens.append(f"WHEN :{prefix}_k{i} THEN :{prefix}_v{i}")
    return f"(CASE {column} {' '.join(whens)} ELSE :{prefix}_default END)", params


def as_date(value) -> date:
    """A DATE column value as `date` (SQLite returns text from raw SQL)."""
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


def as_utc(value) -> datetime:
    """A timestamp column value as an aware UTC datetime (SQLite keeps naive UTC text)."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
