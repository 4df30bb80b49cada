"""A whole copy of a test ledger, restorable later: what an operator's backup and restore do."""

from __future__ import annotations

import sqlite3
import uuid

from sorae_payouts_tests.conftest import _pg_admin


class Backup:
    """A whole copy of the ledger database, restorable later (what an operator's restore does)."""

    def __init__(self, engine, ledger_url, tmp_path):
        self.engine, self.url, self.tmp = engine, ledger_url, tmp_path
        engine.dispose()
        if engine.dialect.name == "sqlite":
            self.copy = tmp_path / f"backup-{uuid.uuid4().hex[:6]}.sqlite3"
            with sqlite3.connect(engine.url.database) as src, sqlite3.connect(self.copy) as dst:
                src.backup(dst)
        else:
            self.copy = f"sorae_backup_{uuid.uuid4().hex[:12]}"
            _pg_admin(f'CREATE DATABASE "{self.copy}" TEMPLATE "{engine.url.database}"')

    def restore(self):
        self.engine.dispose()
        if self.engine.dialect.name == "sqlite":
            with sqlite3.connect(self.copy) as src, sqlite3.connect(self.engine.url.database) as dst:
                src.backup(dst)
        else:
            name = self.engine.url.database
            _pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
            _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.copy}"')
            _pg_admin(f'DROP DATABASE "{self.copy}"')
