"""`sorae-payouts import ...`: exit codes 0 (all loaded), 2 (some rejected), 1 (nothing loaded); `--program`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from sorae_payouts.cli import import_cmd
from sorae_payouts.ledger import schema
from sorae_payouts.registry.programs import add_program, set_program_status
from sorae_payouts_tests.ingest.helpers import AFFILIATE_HEADER, COMMISSION_HEADER, NOW, table_rows, write_csv

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
        [f"B{i}", "Bad", "no-at-sign", "", "usd"] for i in range(25)
    ]
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
    result = subprocess.run(
        [sys.executable, "-m", "sorae_payouts.cli.main", "import", "commissions", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown affiliate A9" in result.stdout


def test_program_option_files_rows_without_the_column_under_that_program(engine, ledger_url, tmp_path):
    add_program(engine, "acme", name="Acme", added_by="test", now=NOW)
    path = write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, [["A1", "Ann", "ann@example.com", "", "usd"]])
    result = invoke(ledger_url, "affiliates", str(path), "--program", "acme")
    assert result.exit_code == 0, result.output
    assert "affiliates a.csv (program acme): read 1 | inserted 1" in result.output
    assert invoke(ledger_url, "affiliates", str(path)).exit_code == 0  # no option: the default program
    assert table_rows(engine, schema.affiliate, "program_id", "affiliate_id") == [("acme", "A1"), ("default", "A1")]


def test_an_unknown_or_disabled_program_fails_before_the_file_is_read(engine, ledger_url, tmp_path):
    add_program(engine, "gone", name="Gone", added_by="test", now=NOW)
    set_program_status(engine, "gone", active=False, changed_by="test", now=NOW)
    for program, message in (("nope", "unknown program 'nope'"), ("gone", "program 'gone' is disabled")):
        result = invoke(ledger_url, "commissions", str(tmp_path / "missing.csv"), "--program", program)
        assert result.exit_code == 1, result.output
        assert message in result.output and "nothing was loaded" in result.output
        assert "no such file" not in result.output


def test_an_explicit_program_rejects_rows_that_name_another(engine, ledger_url, tmp_path):
    add_program(engine, "acme", name="Acme", added_by="test", now=NOW)
    path = write_csv(
        tmp_path / "a.csv",
        ["program_id", *AFFILIATE_HEADER],
        [["acme", "A1", "Ann", "ann@example.com", "", "usd"], ["default", "A2", "Bo", "bo@example.com", "", "usd"]],
    )
    result = invoke(ledger_url, "affiliates", str(path), "--program", "acme", "--json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    assert (report["program_id"], report["inserted"], report["rejected_rows"]) == ("acme", 1, 1)
    assert report["rejects"][0]["column"] == "program_id" and report["rejects"][0]["value"] == "default"
    assert "is not the program of this import ('acme')" in report["rejects"][0]["reason"]
    result = invoke(ledger_url, "affiliates", str(path))  # without the option each row goes to its program
    assert result.exit_code == 0 and "(program per row)" in result.output and "inserted 1" in result.output
    assert table_rows(engine, schema.affiliate, "program_id", "affiliate_id") == [("acme", "A1"), ("default", "A2")]
