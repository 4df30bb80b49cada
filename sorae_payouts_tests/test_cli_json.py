"""`--json` wherever the CLI prints a table: import (with its rejects) and demo-data."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sorae_payouts.cli.main import build_app


def test_import_json_reports_counts_and_rejects(engine, ledger_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    path = tmp_path / "affiliates.csv"
    path.write_text("affiliate_id,name,email,stripe_account_id,currency\nx1,X,x@x.io,,usd\nx2,Y,y@y.io,,XXX\n")
    result = CliRunner().invoke(build_app(), ["import", "affiliates", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert (report["rows_read"], report["inserted"], report["rejected_rows"]) == (2, 1, 1)
    assert report["rejects"] == [
        {"row": 2, "column": "currency", "reason": report["rejects"][0]["reason"], "value": "XXX"}
    ]


def test_demo_data_json_names_the_files_and_summary(tmp_path):
    result = CliRunner().invoke(
        build_app(),
        [
            "demo-data",
            "--out",
            str(tmp_path / "d"),
            "--affiliates",
            "10",
            "--commissions",
            "40",
            "--month",
            "2026-08",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"]["month"] == "2026-08" and data["affiliates"].endswith("affiliates.csv")
