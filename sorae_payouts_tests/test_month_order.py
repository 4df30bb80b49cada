"""Month ordering is explained before anything is written: the domain check, the Dagster step that
applies it first, and the CLI that says which batches exist. Both ledger backends."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.core.periods import parse_period
from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.month_end.month_order import MonthOrderError, check_month_end_order, next_buildable_month
from sorae_payouts_tests.factory import NOW, add_affiliate, add_commission, build_manifest, finalize_period

POLICY = PayoutPolicy.from_major({"usd": "1.00"})


def _seed(engine, months):
    add_affiliate(engine, "alice")
    for i, month in enumerate(months):
        add_commission(engine, "alice", 1_000 + i, earned_at=datetime.fromisoformat(f"{month}-15T00:00:00+00:00"))


def _close(engine, month):
    finalize_period(engine, parse_period(month), now=NOW, holding_days=3)
    build_manifest(engine, parse_period(month), policy=POLICY, now=NOW)


def _months(*names):
    return [parse_period(n) for n in names]


def _counts(engine):
    with engine.connect() as conn:
        return (
            conn.execute(sa.text("SELECT COUNT(*) FROM commission_period")).scalar_one(),
            conn.execute(sa.text("SELECT COUNT(*) FROM payout_batch")).scalar_one(),
        )


def test_earlier_month_after_a_later_batch_is_refused_naming_what_can_run(engine):
    _seed(engine, ["2026-10"])
    _close(engine, "2026-10")
    with engine.connect() as conn:
        with pytest.raises(MonthOrderError) as refused:
            check_month_end_order(conn, _months("2026-09"))
        assert next_buildable_month(conn) == parse_period("2026-11")
    message = str(refused.value)
    assert "2026-09" in message and "later month 2026-10 already has a batch (draft)" in message
    assert "re-run 2026-10 alone" in message and "2026-11 and the months after it" in message


def test_range_rebuilding_a_draft_before_another_draft_is_refused(engine):
    _seed(engine, ["2026-09", "2026-10"])
    _close(engine, "2026-09")
    _close(engine, "2026-10")
    with engine.connect() as conn:
        with pytest.raises(MonthOrderError, match="2026-09 would need a new or rebuilt batch"):
            check_month_end_order(conn, _months("2026-09", "2026-10"))
        check_month_end_order(conn, _months("2026-10"))  # the latest draft alone may be rebuilt


def test_missing_earlier_months_are_listed_in_order(engine):
    _seed(engine, ["2026-08", "2026-09", "2026-10"])
    with engine.connect() as conn:
        with pytest.raises(MonthOrderError) as refused:
            check_month_end_order(conn, _months("2026-10"))
        assert "Run month end in this order: 2026-08 -> 2026-09 -> 2026-10" in str(refused.value)
        check_month_end_order(conn, _months("2026-08", "2026-09", "2026-10"))  # the whole range in order is fine


def test_approved_month_may_be_rerun_whatever_comes_after(engine):
    from sorae_payouts_tests.factory import approve

    _seed(engine, ["2026-09", "2026-10"])
    _close(engine, "2026-09")
    approve(engine, parse_period("2026-09"), "ops", now=NOW)
    _close(engine, "2026-10")
    with engine.connect() as conn:
        check_month_end_order(conn, _months("2026-09"))  # frozen: re-running changes nothing


def _instance() -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("program", ["default"])  # the default program's partitions
    return instance


def test_month_end_job_refuses_before_the_first_step_writes(engine, ledger_url):
    _seed(engine, ["2026-09", "2026-10"])
    with engine.begin() as conn:  # September has commissions but nothing else; October is closed first
        conn.execute(sa.text("DELETE FROM commission WHERE period = :p"), {"p": parse_period("2026-09")})
    _close(engine, "2026-10")
    add_commission(engine, "alice", 5, earned_at=datetime.fromisoformat("2026-09-20T00:00:00+00:00"))
    before = _counts(engine)
    result = defs.resolve_job_def("month_end_job").execute_in_process(
        partition_key="2026-09-01|default",
        raise_on_error=False,
        instance=_instance(),
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()},
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "month_end"
    assert "refused before anything was written" in failure.event_specific_data.error.message
    assert _counts(engine) == before  # September was NOT finalized


def test_batch_show_of_a_missing_month_lists_batches_and_the_next_month(engine, ledger_url, monkeypatch):
    from sorae_payouts.cli.main import build_app

    _seed(engine, ["2026-10"])
    _close(engine, "2026-10")
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    result = CliRunner().invoke(build_app(), ["batch", "show", "2031-01"])
    assert result.exit_code == 1
    assert "no payout batch for 2031-01. Batches: 2026-10 (draft)." in result.output
    assert "cannot be closed before 2031-02-04" in result.output
    assert "Next month that can be built: 2026-11" in result.output


def test_one_run_over_a_range_closes_months_oldest_first_with_a_check_per_month(engine, ledger_url):
    _seed(engine, ["2026-08", "2026-09", "2026-10"])
    result = defs.resolve_job_def("month_end_job").execute_in_process(
        raise_on_error=False,
        instance=_instance(),
        tags={
            "dagster/asset_partition_range_start": "2026-08-01|default",
            "dagster/asset_partition_range_end": "2026-10-01|default",
        },
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()},
    )
    assert result.success
    with engine.connect() as conn:
        built = conn.execute(sa.text("SELECT batch_id FROM payout_batch ORDER BY built_at, batch_id")).scalars().all()
        carried_in = conn.execute(sa.text("SELECT carried_in_minor FROM payout_item ORDER BY batch_id")).scalars().all()
    assert built == ["payout_2026-08", "payout_2026-09", "payout_2026-10"]
    # 10.00, 10.01, 10.02 usd are under the 50.00 default minimum: each month carries the previous
    # month's balance in, which only adds up like this when the months were built oldest first.
    assert [int(c) for c in carried_in] == [0, 1_000, 2_001]
    per_month = {(e.check_name, e.partition) for e in result.get_asset_check_evaluations() if e.partition}
    assert {p for _, p in per_month} == {"2026-08-01|default", "2026-09-01|default", "2026-10-01|default"}
    assert len(per_month) == 9 and all(e.passed for e in result.get_asset_check_evaluations())
