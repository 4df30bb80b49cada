"""`sorae-payouts import ...`: exit codes 0 (all loaded), 2 (some rejected), 1 (nothing loaded)."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from sorae_payouts.cli import import_cmd
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import AFFILIATE_HEADER, COMMISSION_HEADER, table_rows, write_csv

runner = CliRunner()


def invoke(ledger_url: str, *args: str):
    return runner.invoke(import_cmd.app, list(args), env={"SORAE_DATABASE_URL": ledger_url, "COLUMNS": "200"})


def test_clean_import_exits_0_with_a_summary(engine, ledger_url, tmp_path):
    path = write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, [["A1", "Ann", "ann@example.com", "", "usd"]])
    result = invoke(ledger_url, "affiliates", str(path))
    assert result.exit_code == 0, result.output
    assert "read 1 | inserted 1 | updated 0 | already present 0 | rejected 0" in result.output
    assert table_rows(engine, schema.affiliate, "affiliate_id") == [("A1",)]


def test_rejected_rows_exit_2_and_are_listed(engine, ledger_url, tmp_path):
    rows = [["A1", "Ann", "ann@example.com", "", "usd"]] + [
        [f"B{i}", "Bad", "no-at-sign", "", "usd"] for i in range(25)]
    path = write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, rows)
    result = invoke(ledger_url, "affiliates", str(path), "--chunk-rows", "7")
    assert result.exit_code == 2, result.output
    assert "inserted 1" in result.output and "rejected 25" in result.output
    assert "not an email address" in result.output and "no-at-sign" in result.output
    assert f"5 more in {tmp_path / 'a.rejects.csv'}" in result.output.replace("\n", "")
    assert table_rows(engine, schema.affiliate, "affiliate_id") == [("A1",)]


def test_unreadable_file_exits_1_and_says_why(engine, ledger_url, tmp_path):
    path = write_csv(tmp_path / "c.csv", ["commission_id", "affiliate_id"], [["K1", "A1"]])
    result = invoke(ledger_url, "commissions", str(path))
    assert result.exit_code == 1
    assert "missing columns: order_id, amount, currency, earned_at" in result.output.replace("\n", "")
    assert "nothing was loaded" in result.output


def test_the_installed_command_runs_the_import(engine, ledger_url, tmp_path):
    path = write_csv(tmp_path / "c.csv", COMMISSION_HEADER, [["K1", "A9", "O1", "1.00", "usd", "2026-10-05T12:00:00Z"]])
    env = {**os.environ, "SORAE_DATABASE_URL": ledger_url}
    result = subprocess.run([sys.executable, "-m", "sorae_payouts.cli.main", "import", "commissions", str(path)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown affiliate A9" in result.stdout
