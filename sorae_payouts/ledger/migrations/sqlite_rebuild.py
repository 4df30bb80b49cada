"""Rebuilding SQLite tables in a migration (SQLite cannot change a primary key, a UNIQUE or a FOREIGN KEY
in place): SQLite's documented procedure (https://www.sqlite.org/lang_altertable.html#otheralter).

- Foreign keys are switched off for the rebuild, as the procedure requires: with them on, dropping the
  old copy of a referenced table counts a violation per referencing row that SQLite never uncounts,
  even once the rebuilt table holds the same keys (and `PRAGMA foreign_keys` is a no-op inside a
  transaction). So `begin_rebuild` commits the migration run's transaction so far (earlier revisions
  and their version stamp), switches them off and opens one transaction for the whole rebuild; a
  failure rolls the ledger back to the previous revision. `end_rebuild` runs `PRAGMA
  foreign_key_check` and refuses to commit a dangling reference. The ledger engine switches them back
  on at every connection checkout (`ledger.database`).
- The new table is built as `x__new` and renamed `x` once the old one is dropped (with
  `PRAGMA legacy_alter_table` so the rename checks no view or trigger): the other tables' foreign keys,
  triggers and views name `x`, which is the rebuilt table once the swap is done.
- The triggers of a rebuilt table are dropped with its old copy: `capture_triggers` keeps their SQL
  first, `recreate_triggers` puts back those the migration does not replace.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op


def begin_rebuild() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys = OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    bind.exec_driver_sql("PRAGMA legacy_alter_table = ON")


def end_rebuild() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
    problems = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"table rebuild left dangling references: {problems[:5]}")


def capture_triggers(tables: Iterable[str]) -> list[tuple[str, str]]:
    """(name, SQL) of every trigger on these tables, before they are rebuilt."""
    names = tuple(tables)
    marks = ", ".join("?" for _ in names)
    return [
        tuple(r)
        for r in op.get_bind().exec_driver_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks}) ORDER BY name", names
        )
    ]


def recreate_triggers(captured: list[tuple[str, str]], replaced: set[str]) -> None:
    for name, sql in captured:
        if name not in replaced:
            op.execute(sql)


def rebuild(table: sa.Table, copy_columns: dict[str, str]) -> None:
    """Swap `table.name` for `table` (its new definition): create it as `<name>__new`, copy every row
    (`copy_columns`: new column -> SQL expression over the old row), drop the old table, rename the new
    one, then create its indexes (the old ones are dropped first: index names are schema-wide). The
    new table is created under another name rather than the old one renamed aside, because renaming
    a table with foreign keys on rewrites the other tables' references to follow it."""
    bind = op.get_bind()
    new_name = f"{table.name}__new"
    for (index_name,) in bind.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table.name,)
    ).fetchall():
        bind.exec_driver_sql(f'DROP INDEX "{index_name}"')
    staging = table.to_metadata(sa.MetaData(), name=new_name)
    for index in list(staging.indexes):
        staging.indexes.discard(index)
    _referenced_stubs(table, staging.metadata)
    staging.create(bind)
    columns = ", ".join(copy_columns)
    expressions = ", ".join(copy_columns.values())
    bind.exec_driver_sql(f'INSERT INTO "{new_name}" ({columns}) SELECT {expressions} FROM "{table.name}"')
    bind.exec_driver_sql(f'DROP TABLE "{table.name}"')
    bind.exec_driver_sql(f'ALTER TABLE "{new_name}" RENAME TO "{table.name}"')
    for index in table.indexes:
        index.create(bind)


def _referenced_stubs(table: sa.Table, metadata: sa.MetaData) -> None:
    """The tables `table` refers to, as column stubs, so its foreign keys compile in another MetaData."""
    for fk in table.foreign_key_constraints:
        target = fk.referred_table
        if target.name not in metadata.tables:
            sa.Table(target.name, metadata, *[sa.Column(c.name, c.type) for c in target.columns])
