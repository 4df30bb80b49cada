"""Imports per program: ids are unique within a program, a file's rows belong to the import's program or
to the one their program_id column names, and nothing of one program is matched against another's."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from sorae_payouts.ingest import ImportKind
from sorae_payouts.ledger import schema
from sorae_payouts.registry.programs import ProgramError, add_program, set_program_status
from sorae_payouts_tests.ingest.helpers import (
    AFFILIATE_HEADER,
    COMMISSION_HEADER,
    EVENT_HEADER,
    NOW,
    finalize_period,
    problems,
    read_rejects,
    reason_of,
    run_import,
    seed_affiliates,
    seed_commission,
    table_rows,
    write_csv,
)

A, C, E = ImportKind.AFFILIATES, ImportKind.COMMISSIONS, ImportKind.ORDER_EVENTS
AT = "2026-10-05T12:00:00Z"
P = ["program_id"]


@pytest.fixture
def acme(engine):
    add_program(engine, "acme", name="Acme", added_by="test", now=NOW)
    return engine


def per_program(engine, table: sa.Table) -> dict[str, tuple]:
    """program -> (rows, total amount_minor when the table has amounts)."""
    amount = sa.func.coalesce(sa.func.sum(table.c.amount_minor), 0) if "amount_minor" in table.c else sa.literal(0)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.program_id, sa.func.count(), amount).group_by(table.c.program_id))
        return {program: (count, int(total)) for program, count, total in rows}


def test_two_programs_keep_the_same_affiliate_and_commission_ids_apart(acme, tmp_path):
    for program, account, currency, amounts in (
        ("default", "acct_D", "usd", ("1.00", "2.00")),
        ("acme", "acct_X", "eur", ("5.00", "7.25")),
    ):
        affiliates = write_csv(
            tmp_path / f"a_{program}.csv",
            AFFILIATE_HEADER,
            [
                ["A1", f"Ann of {program}", "ann@example.com", f"{account}1", currency],
                ["A2", "Bo", "bo@example.com", f"{account}2", currency],
            ],
        )
        commissions = write_csv(
            tmp_path / f"c_{program}.csv",
            COMMISSION_HEADER,
            [["K1", "A1", "O1", amounts[0], currency, AT], ["K2", "A2", "O2", amounts[1], currency, AT]],
        )
        for kind, path in ((A, affiliates), (C, commissions)):
            report = run_import(acme, kind, path, program_id=program)
            assert (report.inserted, report.rejected_count, report.program_id) == (2, 0, program)
    assert per_program(acme, schema.affiliate) == {"default": (2, 0), "acme": (2, 0)}
    assert per_program(acme, schema.commission) == {"default": (2, 300), "acme": (2, 1225)}
    assert table_rows(acme, schema.affiliate, "program_id", "affiliate_id", "stripe_account_id", "currency") == [
        ("acme", "A1", "acct_X1", "eur"),
        ("acme", "A2", "acct_X2", "eur"),
        ("default", "A1", "acct_D1", "usd"),
        ("default", "A2", "acct_D2", "usd"),
    ]
    everything = table_rows(acme, schema.commission, *schema.commission.c.keys())
    for program in ("default", "acme"):  # re-import is a no-op in each program
        for kind, name in ((A, "a"), (C, "c")):
            again = run_import(acme, kind, tmp_path / f"{name}_{program}.csv", program_id=program)
            assert (again.inserted, again.updated, again.already_present, again.rejected_count) == (0, 0, 2, 0)
    assert table_rows(acme, schema.commission, *schema.commission.c.keys()) == everything
    # The default program's file imported into acme: K1 of acme has another amount, an immutable fact.
    wrong = run_import(acme, C, tmp_path / "c_default.csv", program_id="acme")
    assert reason_of(wrong, 1, "currency").startswith("commission_id K1 of program acme is already in the ledger")


def test_one_file_may_carry_several_programs_with_the_same_ids(acme, tmp_path):
    affiliates = write_csv(
        tmp_path / "a.csv",
        [*P, *AFFILIATE_HEADER],
        [
            ["default", "A1", "Ann", "ann@example.com", "acct_D1", "usd"],
            ["acme", "A1", "Ann", "ann@example.com", "acct_X1", "eur"],
        ],
    )
    assert run_import(acme, A, affiliates).inserted == 2
    commissions = write_csv(
        tmp_path / "c.csv",
        [*COMMISSION_HEADER, *P],
        [
            ["K1", "A1", "O1", "1.00", "usd", AT, "default"],
            ["K1", "A1", "O1", "3.00", "eur", AT, "acme"],  # same id, other program: another commission
            ["K2", "A1", "O2", "2.00", "eur", AT, "acme"],
            ["K2", "A1", "O2", "2.0", "eur", AT, "acme"],  # an identical copy: present once
            ["K3", "A1", "O3", "1.00", "eur", AT, "acme"],
            ["K3", "A1", "O3", "9.99", "eur", AT, "acme"],  # one id, two contents in one program: both rejected
            ["K3", "A1", "O3", "1.00", "usd", AT, "default"],
        ],
    )
    report = run_import(acme, C, commissions, chunk_rows=3)
    assert (report.inserted, report.already_present, report.program_id) == (4, 1, None)
    assert problems(report) == [(5, "commission_id"), (6, "commission_id")]
    assert reason_of(report, 5, "commission_id") == (
        "duplicate commission_id K3 of program acme with different content: also in row 6; none of these rows is loaded"
    )
    assert table_rows(acme, schema.commission, "program_id", "commission_id", "amount_minor") == [
        ("acme", "K1", 300),
        ("acme", "K2", 200),
        ("default", "K1", 100),
        ("default", "K3", 100),
    ]
    again = run_import(acme, C, commissions)
    assert (again.inserted, again.already_present, again.rejected_rows) == (0, 5, 2)


def test_unknown_disabled_and_empty_programs_are_rejected_per_row(acme, tmp_path):
    add_program(acme, "gone", name="Gone", added_by="test", now=NOW)
    set_program_status(acme, "gone", active=False, changed_by="test", now=NOW)
    rows = [
        ["acme", "A1", "Ann", "ann@example.com", "", "usd"],
        ["nope", "A2", "Bo", "bo@example.com", "", "usd"],
        ["gone", "A3", "Cy", "cy@example.com", "", "usd"],
        ["", "A4", "Di", "di@example.com", "", "usd"],
        ["default", "A5", "Ed", "ed@example.com", "", "usd"],
    ]
    report = run_import(acme, A, write_csv(tmp_path / "a.csv", [*P, *AFFILIATE_HEADER], rows))
    assert problems(report) == [(2, "program_id"), (3, "program_id"), (4, "program_id")]
    assert reason_of(report, 2, "program_id") == "unknown program 'nope'"
    assert reason_of(report, 3, "program_id") == "program 'gone' is disabled"
    assert reason_of(report, 4, "program_id").startswith("program_id is empty")
    assert table_rows(acme, schema.affiliate, "program_id", "affiliate_id") == [("acme", "A1"), ("default", "A5")]
    rejects = read_rejects(report.rejects_path)
    assert list(rejects.columns) == [
        "row",
        "column",
        "reason",
        "value",
        *P,
        *AFFILIATE_HEADER,
        "allow_shared_destination",
    ]
    assert rejects[[*P, "affiliate_id"]].values.tolist() == [["nope", "A2"], ["gone", "A3"], ["", "A4"]]


def test_a_file_without_the_column_lands_in_the_import_program(acme, tmp_path):
    path = write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, [["A1", "Ann", "ann@example.com", "", "usd"]])
    assert run_import(acme, A, path).program_id == "default"
    assert run_import(acme, A, path, program_id="acme").inserted == 1
    assert table_rows(acme, schema.affiliate, "program_id", "affiliate_id") == [("acme", "A1"), ("default", "A1")]
    set_program_status(acme, "acme", active=False, changed_by="test", now=NOW)
    for program, message in (("acme", "program 'acme' is disabled"), ("nope", "unknown program 'nope'")):
        with pytest.raises(ProgramError, match=message):
            run_import(acme, A, path, program_id=program)
    assert per_program(acme, schema.affiliate) == {"default": (1, 0), "acme": (1, 0)}


def test_the_default_program_may_be_disabled_when_every_row_names_its_program(acme, tmp_path):
    set_program_status(acme, "default", active=False, changed_by="test", now=NOW)
    named = write_csv(
        tmp_path / "a.csv", [*P, *AFFILIATE_HEADER], [["acme", "A1", "Ann", "ann@example.com", "", "usd"]]
    )
    assert run_import(acme, A, named).inserted == 1
    unnamed = write_csv(tmp_path / "b.csv", AFFILIATE_HEADER, [["A2", "Bo", "bo@example.com", "", "usd"]])
    with pytest.raises(ProgramError, match="program 'default' is disabled"):
        run_import(acme, A, unnamed)


def test_rows_of_another_program_are_rejected_when_the_import_is_for_one(acme, tmp_path):
    path = write_csv(
        tmp_path / "a.csv",
        [*P, *AFFILIATE_HEADER],
        [["acme", "A1", "Ann", "ann@example.com", "", "usd"], ["default", "A2", "Bo", "bo@example.com", "", "usd"]],
    )
    report = run_import(acme, A, path, program_id="acme", reject_other_programs=True)
    assert problems(report) == [(2, "program_id")]
    assert reason_of(report, 2, "program_id").startswith("program 'default' is not the program of this import ('acme')")
    assert report.program_id == "acme"
    assert table_rows(acme, schema.affiliate, "program_id", "affiliate_id") == [("acme", "A1")]


def test_order_events_match_commissions_within_their_program(acme, tmp_path):
    seed_affiliates(acme, "A1", "A2")
    seed_affiliates(acme, "A1", program_id="acme")
    seed_commission(acme, "K1", "O1", 1000, "usd")  # O1 exists only in the default program
    seed_commission(acme, "K2", "O2", 5000, "jpy")
    seed_commission(acme, "K2", "O2", 1000, "usd", program_id="acme")  # same order id, another currency
    seed_commission(acme, "K4a", "O4", 700, "usd")
    seed_commission(acme, "K4b", "O4", 300, "usd", affiliate_id="A2")  # O4: ambiguous in default only
    seed_commission(acme, "K4", "O4", 900, "usd", program_id="acme")
    path = write_csv(
        tmp_path / "e.csv",
        [*EVENT_HEADER, *P],
        [
            ["E1", "O2", "partial_reversal", "500", AT, "default"],  # jpy: no decimals
            ["E1", "O2", "partial_reversal", "1.50", AT, "acme"],  # usd: two decimals
            ["E2", "O1", "cancellation", "", AT, "acme"],  # O1 has no commission in acme
            ["E3", "O4", "partial_reversal", "1.00", AT, "acme"],
            ["E3", "O4", "partial_reversal", "1.00", AT, "default"],
            ["E4", "O2", "partial_reversal", "10.01", AT, "acme"],  # more than acme's O2 commission
        ],
    )
    report = run_import(acme, E, path)
    assert problems(report) == [(3, "order_id"), (5, "order_id"), (6, "amount")]
    assert reason_of(report, 3, "order_id") == (
        "order O1 has no imported commission of program acme: import commissions first"
    )
    assert reason_of(report, 5, "order_id").startswith("partial_reversal is ambiguous: order O4 has 2 commissions")
    assert "more than the order's commission of 10.00 usd" in reason_of(report, 6, "amount")
    assert table_rows(acme, schema.order_event, "program_id", "event_id", "amount_minor", "currency") == [
        ("acme", "E1", 150, "usd"),
        ("acme", "E3", 100, "usd"),
        ("default", "E1", 500, "jpy"),
    ]
    again = run_import(acme, E, path)
    assert (again.inserted, again.already_present, again.rejected_rows) == (0, 3, 3)
    # Without the column the events are the default program's: the same O1 event is matched there.
    default_file = write_csv(tmp_path / "d.csv", EVENT_HEADER, [["E2", "O1", "cancellation", "", AT]])
    assert run_import(acme, E, default_file).inserted == 1


def test_commission_rules_apply_within_the_program(acme, tmp_path):
    seed_affiliates(acme, "A1")
    seed_affiliates(acme, "A1", program_id="acme")
    seed_affiliates(acme, "A9")  # an affiliate of the default program only
    finalize_period(acme, date(2026, 10, 1))  # October is closed in the default program, open in acme
    path = write_csv(
        tmp_path / "c.csv",
        [*P, *COMMISSION_HEADER],
        [
            ["acme", "K1", "A1", "O1", "1.00", "usd", AT],
            ["default", "K1", "A1", "O1", "1.00", "usd", AT],
            ["acme", "K2", "A9", "O2", "1.00", "usd", "2026-11-02T00:00:00Z"],
        ],
    )
    report = run_import(acme, C, path)
    assert problems(report) == [(2, "earned_at"), (3, "affiliate_id")]
    assert reason_of(report, 2, "earned_at") == (
        "period 2026-10 of program default is already finalized: late commissions cannot enter a finalized month"
    )
    assert reason_of(report, 3, "affiliate_id") == (
        "unknown affiliate A9 of program acme: not in the ledger (import affiliates first)"
    )
    assert table_rows(acme, schema.commission, "program_id", "commission_id") == [("acme", "K1")]


def test_parquet_files_carry_the_column_too(acme, tmp_path):
    seed_affiliates(acme, "A1", program_id="acme")
    row = dict(zip(COMMISSION_HEADER, ["K1", "A1", "O1", "1.00", "usd", AT], strict=False))
    table = pa.table({**{column: [value, value] for column, value in row.items()}, "program_id": ["acme", None]})
    pq.write_table(table, tmp_path / "c.parquet")
    report = run_import(acme, C, tmp_path / "c.parquet")
    assert problems(report) == [(2, "program_id")]  # a Parquet null is an empty cell
    assert table_rows(acme, schema.commission, "program_id", "commission_id", "amount_minor") == [("acme", "K1", 100)]
