"""`sorae-payouts batch execute` and `month-end` launch the Dagster jobs through the instance with the
code location (the run is filed under its job and its program-month partition, tagged with its program
and paying account), wait, and print the outcome; quietly. Both ledgers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from sorae_payouts.instance.launching import launch_range_and_wait
from sorae_payouts_tests.execution.conftest import API_KEY, assert_paid_exactly_once, seed_batch
from sorae_payouts_tests.factory import add_affiliate, add_commission, add_program

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "sorae-payouts")


def _env(tmp_path, ledger_url, sandbox) -> dict:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "SORAE_DATABASE_URL": ledger_url,
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": sandbox.url,
        "DAGSTER_HOME": str(home),
        "SORAE_DATA_DIR": str(tmp_path),
        "SORAE_OPERATOR": "Ana Ops",
        "SORAE_STRIPE_RATE_LIMIT": "200",
    }


def test_batch_execute_runs_under_its_job_with_tags_and_prints_the_outcome(
    engine, ledger_url, sandbox, stripe_client, tmp_path
):
    seed_batch(engine, stripe_client, {"alice": 12_000, "bob": 3_000})
    env = _env(tmp_path, ledger_url, sandbox)
    done = subprocess.run(
        [CLI, "batch", "execute", "2026-10", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["run"]["status"] == "SUCCESS" and report["run"]["checks"] == {
        "transfers_reconciled": True,
        "reversals_accounted": True,
    }
    posted = [t for t in report["outcome"]["totals"] if t["outcome"] == "posted"]
    assert posted == [{"currency": "usd", "outcome": "posted", "items": 2, "amount_minor": 15_000}]
    assert_paid_exactly_once(engine, stripe_client)

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        run = instance.get_run_by_id(report["run"]["run_id"])
        origin = run.remote_job_origin
        assert origin is not None and origin.repository_origin.code_location_origin.location_name == "sorae_payouts"
        assert run.job_name == "payout_execution_job"
        assert run.tags["dagster/partition"] == "2026-10-01|default" and run.tags["sorae/operator"] == "Ana Ops"
        assert (run.tags["dagster/partition/month"], run.tags["dagster/partition/program"]) == ("2026-10-01", "default")
        assert run.tags["sorae/batch_id"] == "payout_2026-10" and len(run.tags["sorae/manifest_hash"]) == 64
        # The instance's tag concurrency limits count runs per paying account: its Stripe id, not a key.
        assert run.tags["sorae/program"] == "default" and run.tags["sorae/paying_account"].startswith("acct_")
        assert run.tags["sorae/job"] == "payout_execution_job"
        assert API_KEY not in str(run.tags)
        assert instance.get_dynamic_partitions("program") == ["default"]


def test_month_end_out_of_order_is_refused_before_any_run(engine, ledger_url, sandbox, stripe_client, tmp_path):
    seed_batch(engine, stripe_client, {"alice": 12_000}, approve=False)
    env = _env(tmp_path, ledger_url, sandbox)
    done = subprocess.run(
        [CLI, "month-end", "2026-09", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    refused = json.loads(done.stdout)
    assert refused["run"] is None and "later month 2026-10 already has a batch (draft)" in refused["refused"]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_runs() == []


def test_one_launched_run_closes_the_month_of_every_program(engine, ledger_url, sandbox, tmp_path, monkeypatch):
    """The launch path for month end across programs (what the CLI and the demo use): ONE run of
    month_end_job over 2026-10 x every program key, filed under its job; a refused program fails alone."""
    for program in ("acme", "late"):
        add_program(engine, program, policy={"holding_days": 60} if program == "late" else None)
    for program in ("default", "acme", "late"):
        add_affiliate(engine, "alice", program_id=program)
        add_commission(engine, "alice", 70_000, program_id=program)
    env = _env(tmp_path, ledger_url, sandbox)
    for name in ("SORAE_DATABASE_URL", "DAGSTER_HOME", "SORAE_DATA_DIR", "SORAE_OPERATOR"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("program", ["default", "acme", "late"])
        run = launch_range_and_wait("month_end_job", "2026-10-01", "2026-10-01", instance=instance)
        assert run.status == "FAILURE" and len(instance.get_runs()) == 1
        assert run.partition == "2026-10-01|default...2026-10-01|late"
        assert len(run.failures) == 1 and "2026-10 (late)" in run.failures[0] and "(acme)" not in run.failures[0]
        assert set(run.checks_by_partition) == {"2026-10-01|default", "2026-10-01|acme"}
        assert all(all(c.values()) for c in run.checks_by_partition.values())
        assert instance.get_materialized_partitions(dg.AssetKey("payout_manifest")) == {
            "2026-10-01|default",
            "2026-10-01|acme",
        }
        stored = instance.get_run_by_id(run.run_id)
        assert stored.job_name == "month_end_job" and stored.tags["sorae/job"] == "month_end_job"
        assert stored.remote_job_origin is not None
