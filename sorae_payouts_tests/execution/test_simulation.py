"""The seeded simulation of issue 16, small (the large one is bench/bench_simulation.py): three programs on
one platform account, funded by charges, over three months, with carries, reversals and decisions (two at
once), executions of one program twice at once, dropped answers, a ledger restored from an earlier backup,
and a second ledger re-created from the same files. The invariants hold against the sandbox's records."""

from __future__ import annotations

import pytest

from sorae_payouts.ledger.database import create_ledger_engine, upgrade
from sorae_payouts_tests.conftest import make_ledger_url
from sorae_payouts_tests.execution.conftest import API_KEY
from sorae_payouts_tests.factory import NOV, OCT, SEP
from sorae_payouts_tests.ledger_backup import Backup
from sorae_payouts_tests.simulation import World, run


@pytest.mark.parametrize("seed", [7, 2026])
def test_months_of_payouts_with_faults_pay_nobody_more_than_owed(engine, ledger_url, request, tmp_path, sandbox, seed):
    engines: list = []

    def make_engine():  # the test's ledger first, then a new one for each re-created ledger
        if not engines:
            engines.append(engine)
            return engine
        kind = "sqlite" if engine.dialect.name == "sqlite" else "postgres"
        folder = tmp_path / f"again{len(engines)}"
        folder.mkdir()
        fresh = create_ledger_engine(make_ledger_url(kind, folder, request))
        if kind == "sqlite":
            upgrade(fresh)
        engines.append(fresh)
        return fresh

    world = World(seed, ["acme", "bolt", "cobalt"], affiliates=4, months=[SEP, OCT, NOV])
    figures = run(world, sandbox, API_KEY, make_engine, lambda e: Backup(e, ledger_url, tmp_path).restore)
    for extra in engines[1:]:
        extra.dispose()
    # The faults were met (the seeds are chosen so), and none broke an invariant (`run` asserts them).
    assert figures["transfers"] > 0 and figures["restored"] == 1 and figures["carried_items"] > 0
    assert figures["decisions"] > 0 and figures.get("decided_twice", 0) == 0
