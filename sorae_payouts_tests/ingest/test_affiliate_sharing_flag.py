"""The optional `allow_shared_destination` column of the affiliates file."""

from __future__ import annotations

from sorae_payouts.ingest import ImportKind
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import AFFILIATE_HEADER, run_import, table_rows, write_csv

A = ImportKind.AFFILIATES


def test_the_flag_is_optional_validated_and_updates_known_affiliates(engine, tmp_path):
    without = write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, [["A1", "Ann", "a1@example.com", "acct_1", "usd"]])
    assert run_import(engine, A, without).inserted == 1
    header = [*AFFILIATE_HEADER, "Allow_Shared_Destination"]
    path = write_csv(
        tmp_path / "b.csv",
        header,
        [
            ["A1", "Ann", "a1@example.com", "acct_1", "usd", "TRUE"],
            ["A2", "Bo", "a2@example.com", "acct_1", "usd", ""],
            ["A3", "Cy", "a3@example.com", "acct_1", "usd", "maybe"],
            ["A4", "Di", "a4@example.com", "acct_1", "usd", "no"],
        ],
    )
    report = run_import(engine, A, path)
    assert (report.inserted, report.updated) == (2, 1)
    assert [(r.row, r.column) for r in report.rejected] == [(3, "allow_shared_destination")]
    assert table_rows(engine, schema.affiliate, "affiliate_id", "allow_shared_destination") == [
        ("A1", True),
        ("A2", False),
        ("A4", False),
    ]
    again = run_import(engine, A, path)
    assert (again.inserted, again.updated, again.already_present) == (0, 0, 3)
    # An export without the column (or with it empty) never revokes a permission given earlier.
    assert run_import(engine, A, without).already_present == 1
    blank = write_csv(tmp_path / "c.csv", header, [["A1", "Ann", "a1@example.com", "acct_1", "usd", ""]])
    assert run_import(engine, A, blank).already_present == 1
    revoke = write_csv(tmp_path / "d.csv", header, [["A1", "Ann", "a1@example.com", "acct_1", "usd", "false"]])
    assert run_import(engine, A, revoke).updated == 1
    assert table_rows(engine, schema.affiliate, "affiliate_id", "allow_shared_destination")[0] == ("A1", False)
