"""Commission imports: what loads, what is rejected and why, and that nothing is loaded twice."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from sorae_payouts.core.periods import period_of
from sorae_payouts.ingest import ImportAbortedError, ImportKind
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import (
    COMMISSION_HEADER,
    finalize_period,
    problems,
    read_rejects,
    reason_of,
    run_import,
    seed_commission,
    table_rows,
    write_csv,
)

C = ImportKind.COMMISSIONS
UTC = UTC


def ids_in_ledger(engine) -> list[str]:
    return [row[0] for row in table_rows(engine, schema.commission, "commission_id")]


def test_valid_file_loads_exact_minor_amounts_utc_instants_and_periods(usd_affiliates, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "12.34", "usd", "2026-10-05T12:00:00Z"],
            # 01:00 at +02:00 on Nov 1st is still October in UTC: the period is the UTC month.
            ["K2", "A2", "O2", "0.5", "eur", "2026-11-01T01:00:00+02:00"],
            ["K3", "A1", "O3", "7", "usd", "2026-10-31T23:59:59.123456-05:00"],
        ],
    )
    report = run_import(usd_affiliates, C, path)
    assert (report.rows_read, report.inserted, report.already_present, report.rejected_count) == (3, 3, 0, 0)
    assert report.rejects_path is None and not (tmp_path / "c.rejects.csv").exists()
    rows = table_rows(usd_affiliates, schema.commission)
    assert rows == [
        ("K1", "A1", "O1", 1234, "usd", datetime(2026, 10, 5, 12, tzinfo=UTC), date(2026, 10, 1)),
        ("K2", "A2", "O2", 50, "eur", datetime(2026, 10, 31, 23, tzinfo=UTC), date(2026, 10, 1)),
        ("K3", "A1", "O3", 700, "usd", datetime(2026, 11, 1, 4, 59, 59, 123456, tzinfo=UTC), date(2026, 11, 1)),
    ]
    assert all(row[6] == period_of(row[5]) for row in rows)


def test_zero_and_three_decimal_currencies(usd_affiliates, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "500", "jpy", "2026-10-05T12:00:00Z"],
            ["K2", "A1", "O2", "500.5", "jpy", "2026-10-05T12:00:00Z"],
            ["K3", "A1", "O3", "1.234", "kwd", "2026-10-05T12:00:00Z"],
            ["K4", "A1", "O4", "1.2345", "kwd", "2026-10-05T12:00:00Z"],
            ["K5", "A1", "O5", "1.5", "kwd", "2026-10-05T12:00:00Z"],
        ],
    )
    report = run_import(usd_affiliates, C, path)
    assert problems(report) == [(2, "amount"), (4, "amount")]
    assert reason_of(report, 2, "amount") == "more decimals than jpy allows (0 decimals)"
    assert reason_of(report, 4, "amount") == "more decimals than kwd allows (3 decimals)"
    assert table_rows(usd_affiliates, schema.commission, "commission_id", "amount_minor", "currency") == [
        ("K1", 500, "jpy"),
        ("K3", 1234, "kwd"),
        ("K5", 1500, "kwd"),
    ]


GOOD = ["K2", "A1", "O2", "12.34", "usd", "2026-10-05T12:00:00Z"]


# One database-backed test per class of bad input; test_row_checks.py covers more variants of each.
@pytest.mark.parametrize(
    "column, value, reason",
    [
        ("commission_id", "", "missing commission_id"),
        ("commission_id", "K" * 65, "commission_id is longer than 64 characters"),
        ("amount", "12,34", "not a plain positive decimal number like 12.34"),
        ("amount", "0.00", "amount must be positive"),
        ("amount", "12.345", "more decimals than usd allows (2 decimals)"),
        ("amount", "1234567890123456.00", "amount too large"),
        ("currency", "USD", "unknown currency"),
        ("earned_at", "2026-10-05T12:00:00", "timestamp has no time zone (naive)"),
        ("earned_at", "05/10/2026 12:00 UTC", "not an ISO 8601 timestamp"),
        ("affiliate_id", "A9", "unknown affiliate A9: not in the ledger (import affiliates first)"),
    ],
)
def test_each_bad_row_is_rejected_and_the_valid_rows_still_load(usd_affiliates, tmp_path, column, value, reason):
    bad = list(GOOD)
    bad[COMMISSION_HEADER.index(column)] = value
    path = write_csv(
        tmp_path / "in.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "1.00", "usd", "2026-10-05T12:00:00Z"],
            bad,
            ["K3", "A2", "O3", "3.00", "usd", "2026-10-06T12:00:00Z"],
        ],
    )
    report = run_import(usd_affiliates, C, path)
    assert problems(report) == [(2, column)]
    assert reason in reason_of(report, 2, column)
    assert report.inserted == 2 and report.rejected_rows == 1
    assert ids_in_ledger(usd_affiliates) == ["K1", "K3"]
    rejects = read_rejects(report.rejects_path)
    assert report.rejects_path == tmp_path / "in.rejects.csv"
    assert rejects[["row", "column", "value"]].values.tolist() == [["2", column, value]]
    assert rejects[COMMISSION_HEADER].values.tolist() == [bad]


def test_every_problem_of_a_row_is_reported(usd_affiliates, tmp_path):
    path = write_csv(tmp_path / "in.csv", COMMISSION_HEADER, [["", "A1", "O1", "1.234", "usd", "2026-10-05 12:00"]])
    report = run_import(usd_affiliates, C, path)
    assert problems(report) == [(1, "commission_id"), (1, "amount"), (1, "earned_at")]
    assert (report.rejected_count, report.rejected_rows, report.inserted) == (3, 1, 0)


def test_reimporting_the_same_file_changes_nothing(usd_affiliates, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "12.34", "usd", "2026-10-05T12:00:00Z"],
            ["K2", "A2", "O2", "1", "jpy", "2026-10-05T12:00:00+09:00"],
        ],
    )
    run_import(usd_affiliates, C, path)
    everything = table_rows(usd_affiliates, schema.commission, *schema.commission.c.keys())
    again = run_import(usd_affiliates, C, path)
    assert (again.inserted, again.already_present, again.rejected_count) == (0, 2, 0)
    assert table_rows(usd_affiliates, schema.commission, *schema.commission.c.keys()) == everything


def test_identical_rows_within_a_file_load_once(usd_affiliates, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "12.30", "usd", "2026-10-05T12:00:00Z"],
            ["K2", "A1", "O2", "1.00", "usd", "2026-10-05T12:00:00Z"],
            ["K1", "A1", "O1", "12.30", "usd", "2026-10-05T12:00:00Z"],
            # The same commission written differently is the same commission.
            ["K1", "A1", "O1", "12.3", "usd", "2026-10-05T14:00:00+02:00"],
        ],
    )
    report = run_import(usd_affiliates, C, path)
    assert (report.inserted, report.already_present, report.rejected_count) == (2, 2, 0)
    assert table_rows(usd_affiliates, schema.commission, "commission_id", "amount_minor") == [("K1", 1230), ("K2", 100)]


def test_one_id_with_different_content_in_a_file_rejects_all_its_rows(usd_affiliates, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "1.00", "usd", "2026-10-05T12:00:00Z"],
            ["K2", "A1", "O2", "2.00", "usd", "2026-10-05T12:00:00Z"],
            ["K1", "A1", "O1", "1.01", "usd", "2026-10-05T12:00:00Z"],
            ["K1", "A1", "O1", "1.00", "usd", "2026-10-05T12:00:00Z"],
            ["K1", "A1", "O1", "x", "usd", "2026-10-05T12:00:00Z"],
        ],
    )
    report = run_import(usd_affiliates, C, path)
    assert [(row, col) for row, col in problems(report) if col == "commission_id"] == [
        (1, "commission_id"),
        (3, "commission_id"),
        (4, "commission_id"),
        (5, "commission_id"),
    ]
    assert reason_of(report, 1, "commission_id") == (
        "duplicate commission_id K1 with different content: also in rows 3, 4, 5; none of these rows is loaded"
    )
    assert "also in rows 1, 3, 4" in reason_of(report, 5, "commission_id")
    assert ids_in_ledger(usd_affiliates) == ["K2"]


def test_duplicates_are_found_across_chunk_boundaries(usd_affiliates, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "1.00", "usd", "2026-10-05T12:00:00Z"],
            ["K2", "A1", "O2", "2.00", "usd", "2026-10-05T12:00:00Z"],
            ["K3", "A1", "O3", "3.00", "usd", "2026-10-05T12:00:00Z"],
            ["K2", "A1", "O2", "2.00", "usd", "2026-10-05T12:00:00Z"],
            ["K1", "A1", "O1", "9.00", "usd", "2026-10-05T12:00:00Z"],
        ],
    )
    progress: list[int] = []
    report = run_import(usd_affiliates, C, path, chunk_rows=2, on_progress=progress.append)
    assert progress == [2, 4, 5]
    assert problems(report) == [(1, "commission_id"), (5, "commission_id")]
    assert "also in row 5;" in reason_of(report, 1, "commission_id")
    assert (report.inserted, report.already_present) == (2, 1)
    assert ids_in_ledger(usd_affiliates) == ["K2", "K3"]


def test_a_known_id_with_different_content_is_rejected_and_the_ledger_keeps_its_version(usd_affiliates, tmp_path):
    seed_commission(usd_affiliates, "K1", "O1", 1234)
    seed_commission(usd_affiliates, "K2", "O2", 500)
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K1", "A1", "O1", "12.35", "usd", "2026-10-05T12:00:00Z"],
            ["K2", "A1", "O2", "5.00", "usd", "2026-10-05T12:00:00Z"],
            ["K3", "A1", "O3", "1.00", "usd", "2026-10-05T12:00:00Z"],
        ],
    )
    report = run_import(usd_affiliates, C, path)
    assert problems(report) == [(1, "amount")]
    assert reason_of(report, 1, "amount").startswith(
        "commission_id K1 is already in the ledger with a different amount"
    )
    assert (report.inserted, report.already_present) == (1, 1)
    assert table_rows(usd_affiliates, schema.commission, "commission_id", "amount_minor") == [
        ("K1", 1234),
        ("K2", 500),
        ("K3", 100),
    ]


def test_late_commission_cannot_enter_a_finalized_month(usd_affiliates, tmp_path):
    seed_commission(usd_affiliates, "K0", "O0", 100, earned_at=datetime(2026, 10, 2, tzinfo=UTC))
    finalize_period(usd_affiliates, date(2026, 10, 1))
    path = write_csv(
        tmp_path / "c.csv",
        COMMISSION_HEADER,
        [
            ["K0", "A1", "O0", "1.00", "usd", "2026-10-02T00:00:00Z"],  # already in: present, not late
            ["K1", "A1", "O1", "1.00", "usd", "2026-10-15T12:00:00Z"],
            ["K2", "A1", "O2", "1.00", "usd", "2026-10-31T23:30:00-01:00"],  # November in UTC
        ],
    )
    report = run_import(usd_affiliates, C, path)
    assert problems(report) == [(2, "earned_at")]
    assert reason_of(report, 2, "earned_at") == (
        "period 2026-10 is already finalized: late commissions cannot enter a finalized month"
    )
    assert (report.inserted, report.already_present) == (1, 1)
    assert ids_in_ledger(usd_affiliates) == ["K0", "K2"]


def test_rejects_file_is_replaced_and_removed_by_a_clean_reimport(usd_affiliates, tmp_path):
    rows = [
        ["K1", "A1", "O1", "1.00", "usd", "2026-10-05T12:00:00Z"],
        ["K2", "A1", "O2", "oops", "usd", "2026-10-05T12:00:00Z"],
    ]
    path = write_csv(tmp_path / "c.csv", COMMISSION_HEADER, rows)
    assert run_import(usd_affiliates, C, path).rejects_path.exists()
    write_csv(path, COMMISSION_HEADER, [rows[0], ["K2", "A1", "O2", "2.00", "usd", "2026-10-05T12:00:00Z"]])
    report = run_import(usd_affiliates, C, path)
    assert (report.inserted, report.already_present, report.rejects_path) == (1, 1, None)
    assert list(tmp_path.glob("*rejects*")) == []


def test_many_rejects_keep_the_first_thousand_in_memory_and_all_in_the_file(usd_affiliates, tmp_path):
    rows = [[f"K{i}", "A1", f"O{i}", "1.00", "zzz", "2026-10-05T12:00:00Z"] for i in range(1, 1206)]
    report = run_import(usd_affiliates, C, write_csv(tmp_path / "c.csv", COMMISSION_HEADER, rows), chunk_rows=500)
    assert (len(report.rejected), report.rejected_count, report.rejected_rows) == (1000, 1205, 1205)
    assert [r.row for r in report.rejected[:3]] == [1, 2, 3]
    assert read_rejects(report.rejects_path)["row"].astype(int).tolist() == list(range(1, 1206))


def _abort_on(engine, commission_id: str) -> None:
    """A test-only trigger that makes the database refuse one commission, as a constraint would."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER test_boom BEFORE INSERT ON commission WHEN NEW.commission_id = "
                f"'{commission_id}' BEGIN SELECT RAISE(ABORT, 'boom: refused by the test'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.commission_id = '{commission_id}' THEN RAISE EXCEPTION 'boom: refused by the test'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER test_boom BEFORE INSERT ON commission FOR EACH ROW EXECUTE FUNCTION test_boom()"
            )


def test_a_database_failure_midway_loads_nothing_and_says_why(usd_affiliates, tmp_path):
    _abort_on(usd_affiliates, "K3")
    rows = [[f"K{i}", "A1", f"O{i}", "1.00", "usd", "2026-10-05T12:00:00Z"] for i in range(1, 6)]
    path = write_csv(tmp_path / "c.csv", COMMISSION_HEADER, [*rows, ["K9", "A1", "O9", "bad", "usd", "x"]])
    with pytest.raises(ImportAbortedError, match="nothing was imported .* boom: refused by the test"):
        run_import(usd_affiliates, C, path, chunk_rows=2)
    assert ids_in_ledger(usd_affiliates) == []
    assert list(tmp_path.glob("*rejects*")) == []  # no rejects file for an import that did not happen
    with usd_affiliates.connect() as conn:  # the pooled connection is clean for the next import
        assert conn.execute(sa.text("SELECT COUNT(*) FROM commission")).scalar_one() == 0
