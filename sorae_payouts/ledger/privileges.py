"""Least privilege on PostgreSQL: the application's role gets only the DML it needs.

Migrations run as the owner role (it owns tables, triggers and functions). The application role
gets SELECT, INSERT, UPDATE and DELETE on the ledger's tables (no DELETE on operational state, the
Stripe rate schedule) and USAGE on their sequences: no TRUNCATE, no TRIGGER, no REFERENCES, no DDL,
and it owns nothing, so it cannot drop or disable a trigger, alter a table or empty one behind the
row guards (which also refuse TRUNCATE on their own).
Grants are re-applied on every upgrade (tables added by later migrations are covered) and default
privileges cover tables the owner creates later.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.ledger.schema import OPERATIONAL_TABLES

APP_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
# Operational state the application overwrites but never deletes (revision 0011): SELECT, INSERT, UPDATE.
APP_NO_DELETE_TABLES = tuple(sorted(OPERATIONAL_TABLES))
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PrivilegeError(PayoutRefused):
    """The app role cannot be set up as asked; the message says why."""


def grant_app_role(engine: sa.Engine, role: str, *, password: str | None = None) -> list[str]:
    """Create the application role if needed (LOGIN, with `password` when given) and (re-)grant it
    the ledger's DML. Run as the owner role, after migrating. Returns the statements run (no password)."""
    if engine.dialect.name != "postgresql":
        raise PrivilegeError("database roles exist only on PostgreSQL (SQLite has no roles)")
    if not _ROLE_NAME.fullmatch(role):
        raise PrivilegeError(f"role name {role!r} must be lowercase letters, digits and underscores")
    done: list[str] = []
    with engine.begin() as conn:
        owner = conn.exec_driver_sql("SELECT current_user").scalar_one()
        if role == owner:
            raise PrivilegeError(f"the app role {role!r} is the migration (owner) role; use a separate role")
        owned = conn.execute(
            sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tableowner = :r"),
            {"r": role},
        ).scalar_one()
        if owned:
            raise PrivilegeError(
                f"role {role!r} owns {owned} ledger tables; migrate as the owner role "
                "(SORAE_MIGRATION_DATABASE_URL) and reassign them (REASSIGN OWNED BY)"
            )
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if not exists or password:
            verb = "ALTER" if exists else "CREATE"
            # format() quotes the identifier and the password literal server-side (no DDL parameters).
            ddl = conn.execute(
                sa.text(
                    "SELECT format('%s ROLE %I LOGIN' || CASE WHEN CAST(:p AS text) IS NULL "
                    "THEN '' ELSE ' PASSWORD ' || quote_literal(CAST(:p AS text)) END, "
                    "CAST(:v AS text), CAST(:r AS text))"
                ),
                {"p": password, "v": verb, "r": role},
            ).scalar_one()
            conn.exec_driver_sql(ddl)
            done.append(f"{verb} ROLE {role} LOGIN" + (" PASSWORD ***" if password else ""))
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        database = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        q = conn.dialect.identifier_preparer.quote
        r, s = q(role), q(schema)
        statements = [
            f"GRANT CONNECT ON DATABASE {q(database)} TO {r}",
            f"GRANT USAGE ON SCHEMA {s} TO {r}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}",  # whatever was granted before, e.g. TRUNCATE
            f"GRANT {APP_TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {s} TO {r}",
            f"REVOKE INSERT, UPDATE, DELETE ON TABLE {s}.alembic_version FROM {r}",  # reads the revision only
            *(f"REVOKE DELETE ON TABLE {s}.{q(table)} FROM {r}" for table in APP_NO_DELETE_TABLES),
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT {APP_TABLE_PRIVILEGES} ON TABLES TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {r}",
        ]
        for statement in statements:
            conn.exec_driver_sql(statement)
        return done + statements
