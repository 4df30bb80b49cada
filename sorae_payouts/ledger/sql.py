"""Small portable SQL helpers: the same statement text runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime

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
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def set_text(statement: str) -> sa.TextClause:
    """`ledger.sql.text` with the list parameters (`:program_ids`, `:batch_ids`) expanded to IN lists."""
    clause = text(statement)
    for name in ("program_ids", "batch_ids", "prev_batch_ids"):
        if f":{name}" in statement:
            clause = clause.bindparams(sa.bindparam(name, expanding=True, type_=sa.String()))
    return clause


def values_cte(
    name: str, columns: Sequence[str], rows: Sequence[Sequence], prefix: str, *, types: Sequence[str]
) -> tuple[str, dict]:
    """`name(columns) AS (VALUES (...), ...)` with bound parameters, for a WITH clause; an empty list
    becomes a query of no rows of the given SQL `types` (VALUES cannot be empty). Both databases
    accept the column list."""
    params: dict = {}
    if not rows:
        nulls = ", ".join(f"CAST(NULL AS {t})" for t in types)
        return f"{name}({', '.join(columns)}) AS (SELECT {nulls} WHERE 1 = 0)", params
    tuples = []
    for i, row in enumerate(rows):
        names = []
        for j, value in enumerate(row):
            params[f"{prefix}_{i}_{j}"] = value
            names.append(f":{prefix}_{i}_{j}")
        tuples.append(f"({', '.join(names)})")
    return f"{name}({', '.join(columns)}) AS (VALUES {', '.join(tuples)})", params


def insert_ignoring_conflicts(conn: sa.Connection, table: sa.Table):
    """INSERT ... ON CONFLICT DO NOTHING on either database: rows whose key is taken (e.g. by a
    concurrent run that got there first) are skipped, and RETURNING says which rows went in."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


# Working memory for one sort or hash of the month-end statements on PostgreSQL. The default (4 MB)
# makes a 1,000,000-group aggregate or join spill to disk in dozens of batches (measured ~2-3x slower
# across 1,000 programs); 256 MB keeps them in memory. Transaction-local (SET LOCAL): it ends with the
# month-end transaction and never changes the server.
MONTH_END_WORK_MEM = "256MB"


def allow_large_sorts(conn: sa.Connection) -> None:
    """Give this transaction's big aggregates and joins room in memory (PostgreSQL; SQLite has no knob)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{MONTH_END_WORK_MEM}'")
