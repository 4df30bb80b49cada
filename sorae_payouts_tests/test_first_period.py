"""The ledger's first period: one setting for the Dagster partitions and the import's date window; a
month-end blocked by an earlier month says which month, which rows and what fixes it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest

from sorae_payouts.core.periods import first_period
from sorae_payouts.defs.lib.partitions import monthly_partitions
from sorae_payouts.month_end.finalize import FinalizeError
from sorae_payouts_tests.factory import NOW, OCT, add_affiliate, add_commission, add_program, finalize_period

COMMAND = "dagster asset materialize -m sorae_payouts.definitions --select finalized_commissions --partition"


def test_partitions_start_at_the_first_period(monkeypatch):
    assert first_period() == date(2025, 1, 1)
    assert monthly_partitions.get_first_partition_window().start.date() == date(2025, 1, 1)
    monkeypatch.setenv("SORAE_FIRST_PERIOD", "2026-03")
    assert first_period() == date(2026, 3, 1)
    code = "from sorae_payouts.defs.lib.partitions import monthly_partitions as p; print(p.get_partition_keys()[0])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "SORAE_FIRST_PERIOD": "2026-03"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.strip() == "2026-03-01"
    monkeypatch.setenv("SORAE_FIRST_PERIOD", "March 2026")
    with pytest.raises(ValueError, match="SORAE_FIRST_PERIOD='March 2026' must be a month like 2025-01"):
        first_period()


def test_a_month_end_blocked_by_an_earlier_month_names_it_its_rows_and_the_fix(engine):
    add_affiliate(engine, "alice")
    for day in range(1, 8):
        add_commission(engine, "alice", 1_000, earned_at=datetime(2026, 9, day, tzinfo=UTC))
    add_commission(engine, "alice", 5_000)
    with pytest.raises(FinalizeError) as info:
        finalize_period(engine, OCT, now=NOW, holding_days=3)
    message = str(info.value)
    assert message.startswith("month-end 2026-10 is blocked: the earlier month 2026-09 has 7 commissions (com_")
    assert "and 2 more) and is not finalized yet" in message
    assert f"`{COMMAND} '2026-09-01|default'`" in message


def test_a_month_before_the_first_period_says_so(engine):
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 1_000, earned_at=datetime(1970, 1, 1, tzinfo=UTC))  # an old import
    add_commission(engine, "alice", 5_000)
    with pytest.raises(FinalizeError) as info:
        finalize_period(engine, OCT, now=NOW, holding_days=3)
    message = str(info.value)
    assert "the earlier month 1970-01 has 1 commission (com_" in message
    assert "1970-01 is before the ledger's first period 2025-01" in message
    assert f"`SORAE_FIRST_PERIOD=1970-01 {COMMAND} '1970-01-01|default'`" in message


def test_a_program_with_its_own_first_period_names_it(engine):
    add_program(engine, "acme", policy={"first_period": "2026-06"})
    add_affiliate(engine, "alice", program_id="acme")
    add_commission(engine, "alice", 1_000, earned_at=datetime(2026, 3, 1, tzinfo=UTC), program_id="acme")
    add_commission(engine, "alice", 5_000, program_id="acme")
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 5_000)  # the default program's October is not held back by acme's March
    assert finalize_period(engine, OCT, now=NOW, holding_days=3).commission_count == 1
    with pytest.raises(FinalizeError) as info:
        finalize_period(engine, OCT, now=NOW, holding_days=3, program_id="acme")
    message = str(info.value)
    assert message.startswith(
        "month-end 2026-10 of program acme is blocked: the earlier month 2026-03 has 1 commission"
    )
    assert "2026-03 is before the program's first period 2026-06 (its policy first_period)" in message
    assert f"`{COMMAND} '2026-03-01|acme'`" in message  # the month x program partition key
