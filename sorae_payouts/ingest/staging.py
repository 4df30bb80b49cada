"""The staging area of one import: temporary tables inside the import's single transaction.

`ingest_stage` holds every data row of the file (raw fields, the row-level verdict `ok` and the
parsed values); `ingest_reject` every problem found, row-level ones while reading and cross-row
ones afterwards. The cross-row rules are set-based SQL over these tables, and the final write is one
INSERT ... SELECT, so a million-row file costs a handful of statements, not a million round trips.

Bulk loading: PostgreSQL gets CSV through `COPY ... FROM STDIN`, SQLite an `executemany`. Values are
written in the formats each backend's ledger columns hold: SQLite keeps SQLAlchemy's naive-UTC text
(`YYYY-MM-DD HH:MM:SS.ffffff`, dates `YYYY-MM-DD`), PostgreSQL gets the same text marked `+00`.
Empty fields are stored as NULL (= missing) on both.

Programs: records are identified by (program, id). When the file has a program_id column it is staged
like the other fields and every rule keys on it; otherwise the import's program is written into the
SQL as a constant (`ProgramScope.sql`), so a single-program file stages exactly the columns it did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from sorae_payouts.ingest.checks import RowChecks
from sorae_payouts.ingest.model import ImportKind, Written
from sorae_payouts.ingest.program_scope import PROGRAM_COLUMN, ProgramScope

STAGE = "ingest_stage"
REJECT = "ingest_reject"
REPEAT = "ingest_repeat"
TEMP_TABLES = (STAGE, REJECT, REPEAT, "ingest_order", "ingest_amount")
REJECT_TYPES = {"row_no": "int", "col": "text", "reason": "text", "value": "text"}
_DDL = {
    "sqlite": {"text": "TEXT", "int": "INTEGER", "ts": "TEXT", "date": "TEXT"},
    "postgresql": {"text": "text", "int": "bigint", "ts": "timestamptz", "date": "date"},
}
NOW = sa.bindparam("now", type_=sa.DateTime(timezone=True))
# How many other row numbers a duplicate-id reason names before summarizing.
MAX_NAMED_ROWS = 10
# SQLite's default page cache (2 MB) makes a million index insertions thrash; 256 MB is only
# used as far as the ledger's pages are touched, and the previous size is restored afterwards.
# The staging tables (temp database) are read sequentially and need less.
SQLITE_CACHE_KIB = 262_144
SQLITE_TEMP_CACHE_KIB = 65_536


@dataclass(frozen=True)
class Prepared:
    """A frame converted for bulk loading (built off the connection, so a reader thread can do it)."""

    table: str
    names: list[str]
    payload: list[pa.Array] | bytes  # SQLite: the columns; PostgreSQL: CSV for COPY


class StagingArea:
    """Temporary tables and the SQL helpers the kind-specific rules are written with."""

    def __init__(
        self, conn: sa.Connection, spec: KindSpec, chunk_rows: int, program: ProgramScope | None = None
    ) -> None:
        self.conn, self.spec, self.chunk_rows = conn, spec, chunk_rows
        self.program = program or ProgramScope()
        # The input columns as staged (and shown in the rejects file), and what identifies a record in the
        # file: the program comes first when the file names programs.
        self.raw_columns = (PROGRAM_COLUMN, *spec.columns) if self.program.in_file else spec.columns
        self.key_columns = (PROGRAM_COLUMN, spec.id_column) if self.program.in_file else (spec.id_column,)
        self.dialect = conn.dialect.name
        if self.dialect not in _DDL:
            raise ValueError(f"unsupported ledger backend {self.dialect!r} (SQLite or PostgreSQL)")
        self.rows_read = 0
        self.stage_types = {
            "row_no": "int",
            "ok": "int",
            "raw_key": "text",
            **{c: "text" for c in self.raw_columns},
            **dict(spec.parsed),
        }
        self._sqlite_cache: tuple[int, int] | None = None  # (main, temp) page cache sizes to restore
        self._rows_indexed = False

    # --- tables -------------------------------------------------------------------------------
    def create(self) -> None:
        self.drop()  # SQLite keeps temp tables per pooled connection; never inherit a stale one
        if self.dialect == "sqlite":
            self._sqlite_cache = (
                self.conn.exec_driver_sql("PRAGMA main.cache_size").scalar_one(),
                self.conn.exec_driver_sql("PRAGMA temp.cache_size").scalar_one(),
            )
            self.conn.exec_driver_sql(f"PRAGMA main.cache_size = -{SQLITE_CACHE_KIB}")
            self.conn.exec_driver_sql(f"PRAGMA temp.cache_size = -{SQLITE_TEMP_CACHE_KIB}")
        else:  # sorts of a million staged rows stay in memory (reset at the end of the transaction)
            self.conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        self.create_table(STAGE, self.stage_types, primary="row_no" if self.dialect == "sqlite" else None)
        self.create_table(REJECT, REJECT_TYPES, serial="seq")

    def create_table(
        self, name: str, types: dict[str, str], primary: str | tuple[str, ...] | None = None, serial: str | None = None
    ) -> None:
        ddl = _DDL[self.dialect]
        columns = [f"{c} {ddl[t]}{' PRIMARY KEY' if c == primary else ''}" for c, t in types.items()]
        if isinstance(primary, tuple):
            columns.append(f"PRIMARY KEY ({', '.join(primary)})")
        if serial:  # insertion order of rejects = order in which problems were found
            columns.insert(
                0,
                f"{serial} INTEGER PRIMARY KEY"
                if self.dialect == "sqlite"
                else f"{serial} bigint GENERATED BY DEFAULT AS IDENTITY",
            )
        suffix = " ON COMMIT DROP" if self.dialect == "postgresql" else ""
        self.conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} ({', '.join(columns)}){suffix}")

    def finish_loading(self) -> None:
        """After the bulk load: indexes, statistics, and `ingest_repeat`, the (usually few) rows
        whose id occurs more than once in the file (within its program), with `later` = 1 on all but the
        first. A row without an id or a program is rejected anyway and repeats nothing."""
        keys = ", ".join(self.key_columns)
        if self.dialect == "sqlite":  # lets the GROUP BY below read the index instead of sorting
            self.conn.exec_driver_sql(f"CREATE INDEX ingest_stage_id ON {STAGE} ({keys}, row_no)")
        else:  # temporary tables are never auto-analyzed; without statistics the planner guesses
            self.conn.exec_driver_sql(f"ANALYZE {STAGE}")
        self.conn.exec_driver_sql(f"CREATE INDEX ingest_reject_row ON {REJECT} (row_no)")
        self.create_table(REPEAT, {"row_no": "int", "later": "int"}, primary="row_no")
        self.execute(
            f"INSERT INTO {REPEAT} (row_no, later) SELECT s.row_no, CASE WHEN s.row_no > d.first_row THEN 1 ELSE 0 END "
            f"FROM {STAGE} s JOIN (SELECT {keys}, MIN(row_no) AS first_row FROM {STAGE} "
            f"WHERE {' AND '.join(f'{k} IS NOT NULL' for k in self.key_columns)} GROUP BY {keys} "
            f"HAVING COUNT(*) > 1) d ON {' AND '.join(f'd.{k} = s.{k}' for k in self.key_columns)}"
        )

    def index_rows(self) -> None:
        """PostgreSQL: an index to fetch staged rows by number (SQLite's row_no is the rowid)."""
        if self.dialect == "postgresql" and not self._rows_indexed:
            self.conn.exec_driver_sql(f"CREATE UNIQUE INDEX ingest_stage_row ON {STAGE} (row_no)")
            self._rows_indexed = True

    def drop(self) -> None:
        # Schema-qualified, so that a permanent table of the same name can never be the one dropped.
        schema = "temp" if self.dialect == "sqlite" else "pg_temp"
        for name in TEMP_TABLES:
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{name}")
        self.restore_settings()

    def restore_settings(self) -> None:
        if self._sqlite_cache is not None:
            main, temp = self._sqlite_cache
            self.conn.exec_driver_sql(f"PRAGMA main.cache_size = {int(main)}")
            self.conn.exec_driver_sql(f"PRAGMA temp.cache_size = {int(temp)}")
            self._sqlite_cache = None

    # --- bulk load ----------------------------------------------------------------------------
    def prepare_stage(self, frame: pd.DataFrame) -> Prepared:
        return self.prepare(STAGE, frame, self.stage_types)

    def prepare_rejects(self, frame: pd.DataFrame) -> Prepared:
        return self.prepare(REJECT, frame[list(REJECT_TYPES)], REJECT_TYPES)

    def add_rejects(self, frame: pd.DataFrame) -> None:
        self.write(self.prepare_rejects(frame))

    def load(self, table: str, frame: pd.DataFrame, types: dict[str, str]) -> None:
        self.write(self.prepare(table, frame, types))

    def prepare(self, table: str, frame: pd.DataFrame, types: dict[str, str]) -> Prepared:
        names = list(frame.columns)
        if frame.empty:
            return Prepared(table, names, [])
        arrays = [_db_values(frame[c], types[c], self.dialect) for c in names]
        if self.dialect == "sqlite":
            return Prepared(table, names, arrays)
        # Arrow's CSV writer quotes every string and leaves nulls unquoted-empty, which COPY reads
        # as NULL, so no value can be mistaken for another.
        buffer = pa.BufferOutputStream()
        pa_csv.write_csv(pa.Table.from_arrays(arrays, names=names), buffer, pa_csv.WriteOptions(include_header=False))
        return Prepared(table, names, buffer.getvalue().to_pybytes())

    def write(self, prepared: Prepared) -> None:
        if not prepared.payload:
            return
        columns = ", ".join(prepared.names)
        if self.dialect == "sqlite":
            marks = ", ".join("?" * len(prepared.names))
            # The driver's executemany takes an iterator (SQLAlchemy's wants a list in memory).
            driver = self.conn.connection.driver_connection
            driver.executemany(
                f"INSERT INTO {prepared.table} ({columns}) VALUES ({marks})", _python_rows(prepared.payload)
            )
            return
        cursor = self.conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY {prepared.table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(prepared.payload)

    # --- SQL helpers --------------------------------------------------------------------------
    def execute(self, sql: str, **params) -> sa.CursorResult:
        statement = sa.text(sql)
        if "now" in params:
            statement = statement.bindparams(NOW)
        return self.conn.execute(statement, params)

    def frame(self, sql: str, **params) -> pd.DataFrame:
        """A query's rows as object columns: no type inference, so an integer column with NULLs
        never becomes float (which would round large amounts)."""
        result = self.execute(sql, **params)
        rows = result.fetchall()
        return pd.DataFrame(
            {name: pd.Series([row[i] for row in rows], dtype=object) for i, name in enumerate(result.keys())}
        )

    def lock(self, table: str, mode: str = "SHARE ROW EXCLUSIVE") -> None:
        """PostgreSQL: keep concurrent writers out between the checks and the write. (SQLite's
        BEGIN IMMEDIATE already holds the database's only write lock.)"""
        if self.dialect == "postgresql":
            self.conn.exec_driver_sql(f"LOCK TABLE {table} IN {mode} MODE")

    def differs(self, left: str, right: str) -> str:
        """NULL-safe inequality."""
        return f"({left} {'IS NOT' if self.dialect == 'sqlite' else 'IS DISTINCT FROM'} {right})"

    def month_text(self, date_sql: str) -> str:
        """A date column rendered as its period name, "2026-10"."""
        return f"substr({date_sql}, 1, 7)" if self.dialect == "sqlite" else f"to_char({date_sql}, 'YYYY-MM')"

    @property
    def not_rejected(self) -> str:
        return f"NOT EXISTS (SELECT 1 FROM {REJECT} r WHERE r.row_no = s.row_no)"

    @property
    def first_of_id(self) -> str:
        """The row is the first of its id in the file (later identical copies count as present)."""
        return f"NOT EXISTS (SELECT 1 FROM {REPEAT} rp WHERE rp.row_no = s.row_no AND rp.later = 1)"

    def reject(self, column: str, reason_sql: str, where: str, source: str = f"{STAGE} s") -> None:
        """Reject, with a reason computed in SQL, every row of `source` matching `where`."""
        self.execute(
            f"INSERT INTO {REJECT} (row_no, col, reason, value) "
            f"SELECT s.row_no, '{column}', {reason_sql}, s.{column} FROM {source} WHERE {where}"
        )

    def reject_in_file_conflicts(self, compare: list[str], source: str = f"{STAGE} s") -> None:
        """Reject every row whose id appears elsewhere in the file (in its program) with different content.

        Content is compared on parsed values (so "12.3" and "12.30" agree); a row that failed its
        row-level checks only agrees with an identical broken row (`raw_key`).
        """
        id_column = self.spec.id_column
        differs = " OR ".join(f"MIN({e}) <> MAX({e})" for e in [*compare, "s.raw_key"])
        repeated = f"{source} JOIN {REPEAT} rp ON rp.row_no = s.row_no"
        keys = [f"s.{k}" for k in self.key_columns]
        key_sql = f"({', '.join(keys)})" if len(keys) > 1 else keys[0]
        program = f"s.{PROGRAM_COLUMN}" if self.program.in_file else "''"  # in REPEAT, a program is never NULL
        rows = self.frame(
            f"SELECT s.row_no, s.{id_column} AS id, {program} AS program FROM {repeated} WHERE {key_sql} IN ("
            f" SELECT {', '.join(keys)} FROM {repeated} GROUP BY {', '.join(keys)}"
            f" HAVING {differs} OR COUNT(s.raw_key) BETWEEN 1 AND COUNT(*) - 1)"
            " ORDER BY s.row_no"
        )
        if rows.empty:
            return
        members = rows.groupby(["program", "id"], sort=False)["row_no"].agg(list)
        reasons = [
            _duplicate_reason(f"{id_column} {key}{self.program.named_text(program)}", row, members[(program, key)])
            for key, program, row in zip(rows["id"], rows["program"], rows["row_no"], strict=False)
        ]
        self.add_rejects(
            pd.DataFrame({"row_no": rows["row_no"], "col": id_column, "reason": reasons, "value": rows["id"]})
        )

    def reject_ledger_conflicts(
        self, join: str, checks: list[tuple[str, str]], rule: str, source: str = f"{STAGE} s", where: str = "s.ok = 1"
    ) -> None:
        """Reject rows whose id is already in the ledger (in their program) with different content.

        `join` matches the ledger row of the same program and id; `checks` are (input column, SQL that
        is true when it differs), in the order they are named; the reason names the first differing column.
        """
        id_column = self.spec.id_column
        column = "CASE " + " ".join(f"WHEN {expr} THEN '{col}'" for col, expr in checks) + " END"
        value = "CASE " + " ".join(f"WHEN {expr} THEN s.{col}" for col, expr in checks) + " END"
        differs = " OR ".join(expr for _, expr in checks)
        rule_sql = rule.replace("'", "''")
        self.execute(
            f"INSERT INTO {REJECT} (row_no, col, reason, value) SELECT s.row_no, {column}, "
            f"'{id_column} ' || s.{id_column}{self.program.named()} || ' is already in the ledger with a different ' "
            f"|| {column} "
            f"|| '; {rule_sql}', {value} FROM {source} JOIN {join} WHERE {where} AND ({differs})"
        )


def _duplicate_reason(record: str, row: int, members: list[int]) -> str:
    others = [r for r in members if r != row]
    named = ", ".join(str(r) for r in others[:MAX_NAMED_ROWS])
    if len(others) > MAX_NAMED_ROWS:
        named += f" and {len(others) - MAX_NAMED_ROWS} more"
    return (
        f"duplicate {record} with different content: also in row{'s' if len(others) > 1 else ''} "
        f"{named}; none of these rows is loaded"
    )


def _python_rows(arrays: list[pa.Array], batch: int = 20_000) -> Iterator[tuple]:
    """Rows as tuples for executemany, materialized as Python objects a slice at a time (a whole
    chunk of Python strings would cost several times its Arrow size)."""
    for start in range(0, len(arrays[0]), batch):
        yield from zip(*(a.slice(start, batch).to_pylist() for a in arrays), strict=False)


def _db_values(series: pd.Series, kind: str, dialect: str) -> pa.Array:
    """Column values as an Arrow array with null for missing, in the backend's storage format.
    Arrow's own casts render timestamps as "YYYY-MM-DD HH:MM:SS.ffffff" and dates as "YYYY-MM-DD"."""
    if kind == "text":
        text = pa.array(series, type=pa.string(), from_pandas=True)
        return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if kind == "int":
        return pa.array(series.astype("Int64"), type=pa.int64(), from_pandas=True)
    naive = series.dt.tz_convert(None) if isinstance(series.dtype, pd.DatetimeTZDtype) else series
    moment = pa.array(naive.astype("datetime64[us]"), type=pa.timestamp("us"), from_pandas=True)
    if kind == "date":
        return pc.cast(pc.cast(moment, pa.date32()), pa.string())
    text = pc.cast(moment, pa.string())
    # PostgreSQL would read a bare timestamp in the session's time zone: say it is UTC.
    return pc.binary_join_element_wise(text, "+00", "") if dialect == "postgresql" else text


@dataclass(frozen=True)
class KindSpec:
    """How one kind of file is checked and loaded.

    `columns` are the input columns (exactly these, in any order; those in `optional` may be absent); `parsed` the typed
    staging columns derived from them ("text", "int", "ts" or "date"). `validate` does the row-level
    checks of one chunk and returns the parsed columns; `apply` does the cross-row checks in SQL on
    the staging table and writes the ledger.
    """

    kind: ImportKind
    columns: tuple[str, ...]
    id_column: str
    parsed: tuple[tuple[str, str], ...]
    validate: Callable[[pd.DataFrame, RowChecks], pd.DataFrame]
    apply: Callable[[StagingArea, datetime], Written]
    optional: tuple[str, ...] = ()  # columns of `columns` a file may leave out (read as "")
