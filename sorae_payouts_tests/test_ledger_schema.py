"""The migrations produce exactly the schema the code queries, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sorae_payouts.ledger.schema import metadata


def test_migrated_schema_matches_code_schema(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
