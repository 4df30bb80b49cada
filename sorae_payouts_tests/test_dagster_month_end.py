"""The month-end step and its checks through Dagster, per program-month partition, on both ledgers:
one program's month, a run over many programs (programs with the same affiliate ids kept apart), and
a program that is refused or fails a check while the others are built and checked."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from sorae_payouts.core.periods import parse_period
from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.partitions import ProgramMonth, range_tags, sync_program_partitions
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings
from sorae_payouts.registry.programs import set_program_status
from sorae_payouts_tests.factory import NOW, add_affiliate, add_commission, add_event, add_program

OCTOBER = "2026-10-01|default"
CHECKS = ["finalized_rows_unchanged", "money_is_conserved", "one_item_per_affiliate_currency"]


def _instance(*programs: str) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("program", list(programs or ["default"]))
    return instance


def _run(
    ledger_url,
    partition: str | None = OCTOBER,
    *,
    months=("2026-10",),
    programs=None,
    instance=None,
    job=None,
    **settings,
):
    """One run: a partition key, or (partition=None) the rectangle months x programs."""
    instance = instance or _instance(*(programs or ["default"]))
    tags = None
    if partition is None:
        tags = range_tags(
            ProgramMonth(parse_period(months[0]), programs[0]), ProgramMonth(parse_period(months[-1]), programs[-1])
        )
    return (job or defs.resolve_job_def("month_end_job")).execute_in_process(
        partition_key=partition,
        tags=tags,
        raise_on_error=False,
        instance=instance,
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings(**settings)},
    )


def _materialized(result, asset: str) -> dict[str, dict]:
    return {
        str(m.partition): m.metadata
        for m in result.asset_materializations_for_node("month_end")
        if m.asset_key == dg.AssetKey(asset)
    }


def _checks(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(str(e.partition), e.check_name): e for e in result.get_asset_check_evaluations()}


def _seed(engine, program_id="default"):
    add_affiliate(engine, "alice", program_id=program_id)
    add_affiliate(engine, "kenji", currency="jpy", program_id=program_id)
    order = add_commission(engine, "alice", 12_345, program_id=program_id)
    add_commission(engine, "alice", 100_000, program_id=program_id)
    add_event(engine, order, "partial_reversal", 2_345, program_id=program_id)
    add_commission(engine, "kenji", 4_000, currency="jpy", program_id=program_id)


def test_month_end_job_finalizes_builds_manifest_and_checks_pass(engine, ledger_url):
    _seed(engine)
    result = _run(ledger_url)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert sorted(e.check_name for e in evaluations) == CHECKS
    assert all(e.passed and str(e.partition) == OCTOBER for e in evaluations)
    manifest = _materialized(result, "payout_manifest")[OCTOBER]
    assert manifest["batch_status"].value == "draft" and manifest["item_count"].value == 2
    assert "items_page_1" in manifest and "manifest_csv" in manifest  # one partition: the whole manifest
    totals = {r.data["currency"]: r.data for r in manifest["totals_by_currency"].value.records}
    assert totals["usd"]["payable_minor"] == 110_000 and totals["jpy"]["carried_forward_minor"] == 4_000

    again = _run(ledger_url)
    finalize_meta = _materialized(again, "finalized_commissions")[OCTOBER]
    assert finalize_meta["already_finalized"].value is True
    assert "already finalized; nothing changed" in finalize_meta["summary"].value


def test_holding_window_failure_names_the_date(engine, ledger_url):
    _seed(engine)
    result = _run(ledger_url, holding_days=60)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "cannot be finalized before 2026-12-31 00:00 UTC" in failure.event_specific_data.error.message
    assert _materialized(result, "finalized_commissions") == {}


def test_one_run_over_programs_with_the_same_affiliate_ids(engine, ledger_url):
    add_program(engine, "acme", name="Acme")
    _seed(engine)
    _seed(engine, "acme")
    add_commission(engine, "alice", 50_000, program_id="acme")
    result = _run(ledger_url, None, programs=["default", "acme"])
    assert result.success
    manifests = _materialized(result, "payout_manifest")
    assert set(manifests) == {OCTOBER, "2026-10-01|acme"} == set(_materialized(result, "finalized_commissions"))
    assert manifests["2026-10-01|acme"]["batch_id"].value == "payout_acme_2026-10"
    payable = {
        k: {r.data["currency"]: r.data["payable_minor"] for r in m["totals_by_currency"].value.records}
        for k, m in manifests.items()
    }
    assert payable == {OCTOBER: {"usd": 110_000, "jpy": 0}, "2026-10-01|acme": {"usd": 160_000, "jpy": 0}}
    assert "items_page_1" not in manifests[OCTOBER]  # many partitions: small metadata each
    checks = _checks(result)
    assert sorted(checks) == sorted((p, c) for p in manifests for c in CHECKS) and all(
        e.passed for e in checks.values()
    )


def test_a_refused_program_never_blocks_the_others(engine, ledger_url):
    for program in ("acme", "late", "zeta"):
        add_program(engine, program, policy={"holding_days": 60} if program == "late" else None)
    for program in ("default", "acme", "late", "zeta"):
        _seed(engine, program)
    add_program(engine, "gone")
    set_program_status(engine, "gone", active=False, changed_by="test", now=NOW)
    programs = ["default", "acme", "late", "gone", "zeta"]
    result = _run(ledger_url, None, programs=programs)
    assert not result.success
    built = {"2026-10-01|default", "2026-10-01|acme", "2026-10-01|zeta"}
    assert set(_materialized(result, "finalized_commissions")) == built == set(_materialized(result, "payout_manifest"))
    assert {p for p, _ in _checks(result)} == built and all(e.passed for e in _checks(result).values())
    [failure] = result.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "1 of 5 program-months failed" in message and "2026-10 (late)" in message and "2026-12-31" in message
    assert "gone" not in message  # disabled: skipped, not failed
    with engine.connect() as conn:
        batches = sorted(conn.execute(sa.text("SELECT program_id FROM payout_batch")).scalars())
    assert batches == ["acme", "default", "zeta"]


def test_one_programs_failing_check_leaves_the_others_built_and_checked(engine, ledger_url):
    add_program(engine, "acme")
    _seed(engine)
    _seed(engine, "acme")
    assert _run(ledger_url, None, programs=["default", "acme"]).success
    with engine.begin() as conn:  # a draft can be edited by hand: the checks are what catch it
        conn.execute(
            sa.text(
                "UPDATE payout_item SET amount_minor = amount_minor + 1, period_amount_minor = "
                "period_amount_minor + 1 WHERE currency = 'usd' AND program_id = 'acme'"
            )
        )
    checks_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_check_selection={dg.AssetCheckKey(dg.AssetKey("payout_manifest"), c) for c in CHECKS},
        asset_selection=set(),
    )
    result = _run(ledger_url, None, programs=["default", "acme"], job=checks_only)
    assert not result.success  # a blocking check failed (for acme only)
    checks = _checks(result)
    assert {k: e.passed for k, e in checks.items() if k[0] == OCTOBER} == {(OCTOBER, c): True for c in CHECKS}
    acme = checks[("2026-10-01|acme", "money_is_conserved")]
    assert not acme.passed and acme.severity == dg.AssetCheckSeverity.ERROR and acme.blocking
    assert [r.data["difference_minor"] for r in acme.metadata["rows"].value.records if r.data["currency"] == "usd"] == [
        1
    ]
    assert not checks[("2026-10-01|acme", "finalized_rows_unchanged")].passed


def test_months_of_each_program_are_closed_in_order_in_one_run(engine, ledger_url):
    add_program(engine, "acme")
    for program in ("default", "acme"):
        add_affiliate(engine, "alice", program_id=program)
        add_commission(engine, "alice", 3_000, earned_at=datetime(2026, 9, 10, tzinfo=UTC), program_id=program)
        add_commission(engine, "alice", 4_000, program_id=program)  # September carries 30.00 < 50.00 into October
    result = _run(ledger_url, None, months=("2026-09", "2026-10"), programs=["default", "acme"])
    assert result.success and len(_materialized(result, "payout_manifest")) == 4
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT b.program_id, b.period, i.carried_in_minor, i.amount_minor FROM payout_batch b "
                "JOIN payout_item i ON i.batch_id = b.batch_id ORDER BY b.program_id, b.period"
            )
        ).all()
    assert [(r[0], str(r[1])[:7], int(r[2]), int(r[3])) for r in rows] == [
        ("acme", "2026-09", 0, 3_000),
        ("acme", "2026-10", 3_000, 7_000),
        ("default", "2026-09", 0, 3_000),
        ("default", "2026-10", 3_000, 7_000),
    ]


def test_month_end_schedule_asks_for_one_run_over_every_program():
    schedule = defs.resolve_schedule_def("month_end_job_schedule")
    tick = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        assert schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        ).skip_message
        instance.add_dynamic_partitions("program", ["default", "acme", "zeta"])
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key is None and {k: v for k, v in request.tags.items() if "range" in k} == {
        "dagster/asset_partition_range_start": "2026-11-01|default",
        "dagster/asset_partition_range_end": "2026-11-01|zeta",
    }
    assert schedule.cron_schedule == "0 6 4 * *" and request.run_key == "month_end:2026-11"


def test_registering_a_program_adds_its_partitions_without_a_code_change(engine, ledger_url):
    add_program(engine, "acme")
    sensor = defs.resolve_sensor_def("program_partitions_sensor")
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance, resources={"ledger": LedgerResource(database_url=ledger_url)}, definitions=defs
        ) as context,
    ):
        [request] = sensor.evaluate_tick(context).dynamic_partitions_requests
        assert (request.partitions_def_name, sorted(request.partition_keys)) == ("program", ["acme", "default"])
        instance.add_dynamic_partitions("program", list(request.partition_keys))  # what the daemon does with it
        assert sensor.evaluate_tick(context).skip_message
        add_program(engine, "zeta")
        assert sync_program_partitions(instance, ["acme", "zeta"]) == ["zeta"]  # the CLI's path, at once
        assert instance.get_dynamic_partitions("program")[-1] == "zeta"
    assert _run(ledger_url, "2026-10-01|zeta", programs=["default", "acme", "zeta"]).success  # nothing to close: ok


def test_a_range_run_with_dimension_tags_closes_every_month_of_the_range(engine, ledger_url):
    """A backfill launched from month_end_job's Partitions page makes one run with the range tags AND the
    first partition's dimension tags; every month of the range must be closed, not only the first."""
    add_affiliate(engine, "alice")
    for month in (9, 10):
        add_commission(engine, "alice", 7_000, earned_at=datetime(2026, month, 10, tzinfo=UTC))
    tags = {
        **range_tags(
            ProgramMonth(parse_period("2026-09"), "default"), ProgramMonth(parse_period("2026-10"), "default")
        ),
        "dagster/partition/month": "2026-09-01",
        "dagster/partition/program": "default",
    }
    result = defs.resolve_job_def("month_end_job").execute_in_process(
        tags=tags,
        raise_on_error=False,
        instance=_instance(),
        resources={"ledger": LedgerResource(database_url=ledger_url), "payout_settings": PayoutSettings()},
    )
    assert result.success
    assert set(_materialized(result, "payout_manifest")) == {"2026-09-01|default", OCTOBER}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM payout_batch")).scalar_one() == 2
