"""Affiliate imports: master data, so a known affiliate with new content is updated."""

from __future__ import annotations

from sorae_payouts.ingest import ImportKind
from sorae_payouts.ledger import schema
from sorae_payouts_tests.ingest.helpers import (
    AFFILIATE_HEADER,
    problems,
    read_rejects,
    reason_of,
    run_import,
    table_rows,
    write_csv,
)

A = ImportKind.AFFILIATES


def test_new_affiliates_load_and_an_empty_stripe_account_means_not_onboarded(engine, tmp_path):
    path = write_csv(
        tmp_path / "a.csv",
        AFFILIATE_HEADER,
        [
            ["A1", "Ann", "ann@example.com", "acct_1Abc", "usd"],
            ["A2", "Bo", "bo@example.com", "", "jpy"],
        ],
    )
    report = run_import(engine, A, path)
    assert (report.inserted, report.updated, report.already_present) == (2, 0, 0)
    assert table_rows(engine, schema.affiliate) == [
        ("A1", "Ann", "ann@example.com", "acct_1Abc", "usd"),
        ("A2", "Bo", "bo@example.com", None, "jpy"),
    ]


def test_onboarding_and_email_changes_update_known_affiliates(engine, tmp_path):
    run_import(
        engine,
        A,
        write_csv(
            tmp_path / "a.csv",
            AFFILIATE_HEADER,
            [["A1", "Ann", "ann@example.com", "", "usd"], ["A2", "Bo", "bo@example.com", "", "eur"]],
        ),
    )
    before = dict(table_rows(engine, schema.affiliate, "affiliate_id", "imported_at"))
    report = run_import(
        engine,
        A,
        write_csv(
            tmp_path / "b.csv",
            AFFILIATE_HEADER,
            [
                ["A1", "Ann", "ann@new.example.com", "acct_42", "usd"],  # onboarded, new email
                ["A2", "Bo", "bo@example.com", "", "eur"],  # unchanged
                ["A3", "Cy", "cy@example.com", "", "gbp"],  # new
            ],
        ),
    )
    assert (report.inserted, report.updated, report.already_present, report.rejected_count) == (1, 1, 1, 0)
    assert table_rows(engine, schema.affiliate) == [
        ("A1", "Ann", "ann@new.example.com", "acct_42", "usd"),
        ("A2", "Bo", "bo@example.com", None, "eur"),
        ("A3", "Cy", "cy@example.com", None, "gbp"),
    ]
    after = dict(table_rows(engine, schema.affiliate, "affiliate_id", "imported_at"))
    assert after["A2"] == before["A2"] and after["A1"] > before["A1"]


def test_reimport_is_a_no_op(engine, tmp_path):
    path = write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, [["A1", "Ann", "ann@example.com", "acct_1", "usd"]])
    run_import(engine, A, path)
    before = table_rows(engine, schema.affiliate, *schema.affiliate.c.keys())
    report = run_import(engine, A, path)
    assert (report.inserted, report.updated, report.already_present) == (0, 0, 1)
    assert table_rows(engine, schema.affiliate, *schema.affiliate.c.keys()) == before


BAD_AFFILIATES = [  # (field, value, reason): one class of bad input each; more variants in test_row_checks.py
    ("email", "ann.example.com", "not an email address"),
    ("email", "ann@x@example.com", "not an email address"),
    ("stripe_account_id", "ac_123", "not a Stripe connected account id"),
    ("currency", "EUR", "unknown currency"),
    ("name", "", "missing name"),
]


def test_each_bad_affiliate_is_rejected_and_the_valid_ones_still_load(engine, tmp_path):
    rows = [["A0", "Ann", "ann@example.com", "", "usd"]]
    for i, (field, value, _) in enumerate(BAD_AFFILIATES, start=1):
        rows.append([f"A{i}", "Bo", "bo@example.com", "acct_2", "eur"])
        rows[-1][AFFILIATE_HEADER.index(field)] = value
    rows.append(["A9", "Cy", "cy@example.com", "acct_9", "gbp"])
    report = run_import(engine, A, write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, rows))
    assert problems(report) == [(row, field) for row, (field, _, _) in enumerate(BAD_AFFILIATES, start=2)]
    for row, (field, _, reason) in enumerate(BAD_AFFILIATES, start=2):
        assert reason in reason_of(report, row, field)
    assert table_rows(engine, schema.affiliate, "affiliate_id") == [("A0",), ("A9",)]
    rejects = read_rejects(report.rejects_path)
    assert rejects[["row", *AFFILIATE_HEADER]].values.tolist() == [[str(i + 1), *rows[i]] for i in range(1, 6)]


def test_a_file_that_contradicts_itself_changes_nothing_for_that_affiliate(engine, tmp_path):
    first = [["A1", "Ann", "ann@example.com", "", "usd"]]
    run_import(engine, A, write_csv(tmp_path / "a.csv", AFFILIATE_HEADER, first))
    report = run_import(
        engine,
        A,
        write_csv(
            tmp_path / "b.csv",
            AFFILIATE_HEADER,
            [
                ["A1", "Ann", "ann@one.example.com", "", "usd"],
                ["A2", "Bo", "bo@example.com", "", "usd"],
                ["A1", "Ann", "ann@two.example.com", "", "usd"],
            ],
        ),
    )
    assert problems(report) == [(1, "affiliate_id"), (3, "affiliate_id")]
    assert "also in row 3;" in reason_of(report, 1, "affiliate_id")
    assert (report.inserted, report.updated) == (1, 0)
    assert table_rows(engine, schema.affiliate, "affiliate_id", "email") == [
        ("A1", "ann@example.com"),
        ("A2", "bo@example.com"),
    ]
