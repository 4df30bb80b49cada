"""Fixtures of the ingest tests. Every test that takes `engine` runs on SQLite and on PostgreSQL
(see the root conftest)."""

from __future__ import annotations

import pytest

from sorae_payouts_tests.ingest.helpers import seed_affiliates


@pytest.fixture
def usd_affiliates(engine):
    seed_affiliates(engine, "A1", "A2")
    return engine
