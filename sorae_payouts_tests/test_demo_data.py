"""The demo input files must be what the importer expects, exactly, and realistic enough to exercise
the payout rules: exact decimals per currency (jpy has none), affiliates below the minimum payout or
without a Stripe account, every order-event kind, zoned timestamps inside the month."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from sorae_payouts.core.money import exponent, parse_minor
from sorae_payouts.demo.data import EVENT_GRACE_DAYS, MINIMUM_PAYOUT_MINOR, default_month, write_demo_data

MONTH = "2025-12"  # a year end: late events spill into January of the next year
MONTH_START = datetime(2025, 12, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 1, 1, tzinfo=UTC)
ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    files = write_demo_data(
        tmp_path_factory.mktemp("demo"), affiliates=300, commissions=4000, month=MONTH, seed=11, chunk_rows=1000
    )
    affiliates, commissions, events = (
        pd.read_csv(p, dtype=str) for p in (files.affiliates, files.commissions, files.order_events)
    )
    return files, affiliates, commissions, events


def _minor(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [parse_minor(a, c) for a, c in zip(frame["amount"], frame["currency"], strict=False)], index=frame.index
    )


def test_same_seed_writes_the_same_bytes_whatever_the_chunk_size(tmp_path):
    runs = {
        name: write_demo_data(
            tmp_path / name, affiliates=50, commissions=700, month="2026-02", seed=seed, chunk_rows=chunk
        )
        for name, seed, chunk in (("a", 3, 250_000), ("b", 3, 17), ("c", 4, 250_000))
    }
    for part in ("affiliates", "commissions", "order_events"):
        a, b, c = (getattr(runs[n], part).read_bytes() for n in "abc")
        assert a == b, f"{part} differs between chunk sizes"
        assert a != c, f"{part} ignores the seed"
    assert runs["a"].summary == runs["b"].summary


def test_columns_ids_and_amount_decimals_are_exact(demo):
    _, affiliates, commissions, events = demo
    assert list(affiliates.columns) == ["affiliate_id", "name", "email", "stripe_account_id", "currency"]
    assert list(commissions.columns) == ["commission_id", "affiliate_id", "order_id", "amount", "currency", "earned_at"]
    assert list(events.columns) == ["event_id", "order_id", "kind", "amount", "occurred_at"]
    assert affiliates["affiliate_id"].str.fullmatch(r"aff_\d{6}").all()
    assert commissions["commission_id"].str.fullmatch(r"com_\d{7}").all()
    assert events["event_id"].str.fullmatch(r"evt_\d{6}").all()
    for frame, column in (
        (affiliates, "affiliate_id"),
        (commissions, "commission_id"),
        (commissions, "order_id"),
        (events, "event_id"),
        (events, "order_id"),
    ):
        assert frame[column].is_unique, column
    accounts = affiliates["stripe_account_id"].dropna()
    assert accounts.str.fullmatch(r"acct_[0-9A-Za-z]{16}").all()
    for currency, group in commissions.groupby("currency"):
        places = exponent(currency)
        pattern = r"\d+" if places == 0 else rf"\d+\.\d{{{places}}}"
        assert group["amount"].str.fullmatch(pattern).all(), f"{currency} amounts without {places} decimals"
    # Each commission is in its affiliate's payout currency.
    joined = commissions.merge(affiliates, on="affiliate_id", how="left", suffixes=("", "_aff"))
    assert (joined["currency"] == joined["currency_aff"]).all()


def test_parsed_amounts_reproduce_the_summary_totals(demo):
    files, _, commissions, events = demo
    minor = _minor(commissions)
    assert minor.groupby(commissions["currency"]).sum().to_dict() == {
        c: t for c, t in files.summary["gross_minor_by_currency"].items() if t
    }
    assert files.summary["commissions"] == len(commissions)
    assert files.summary["commissions_by_currency"] == {
        c: int((commissions["currency"] == c).sum()) for c in files.summary["commissions_by_currency"]
    }
    # Reversed = full commission for cancellation/reversal, the event amount for partial reversals.
    ev = events.merge(commissions.assign(minor=minor)[["order_id", "currency", "minor"]], on="order_id")
    assert len(ev) == len(events), "an event points to an order without a commission"
    partial = ev["kind"] == "partial_reversal"
    reversed_minor = ev["minor"].where(~partial, _minor(ev[partial]).reindex(ev.index))
    assert reversed_minor.groupby(ev["currency"]).sum().to_dict() == {
        c: t for c, t in files.summary["reversed_minor_by_currency"].items() if t
    }


def test_partial_reversals_are_smaller_than_their_commission_and_full_ones_have_no_amount(demo):
    _, _, commissions, events = demo
    ev = events.merge(commissions.rename(columns={"amount": "commission_amount"}), on="order_id")
    partial = ev[ev["kind"] == "partial_reversal"]
    for amount, commission, currency in zip(
        partial["amount"], partial["commission_amount"], partial["currency"], strict=False
    ):
        assert 0 < parse_minor(amount, currency) < parse_minor(commission, currency), (amount, commission)
    assert ev.loc[ev["kind"] != "partial_reversal", "amount"].isna().all()


def test_the_month_has_every_case_the_payout_rules_care_about(demo):
    files, affiliates, commissions, events = demo
    summary = files.summary
    assert set(affiliates["currency"]) == {"usd", "eur", "jpy"} and exponent("jpy") == 0
    assert commissions["amount"][commissions["currency"] == "jpy"].str.fullmatch(r"\d+").all()
    shares = affiliates["currency"].value_counts(normalize=True)
    assert shares["usd"] > shares["eur"] > shares["jpy"] >= 0.10
    without = affiliates["stripe_account_id"].isna()
    assert 0.04 * len(affiliates) < without.sum() < 0.15 * len(affiliates)
    assert summary["affiliates_without_account"] == without.sum()
    gross = _minor(commissions).groupby(commissions["affiliate_id"]).sum()
    minimum = affiliates.set_index("affiliate_id")["currency"].map(MINIMUM_PAYOUT_MINOR).reindex(gross.index)
    assert (gross < minimum).sum() == sum(summary["affiliates_below_minimum_by_currency"].values()) > 10
    assert (gross >= minimum).sum() > 10
    counts = commissions["affiliate_id"].value_counts()  # long tail: a few busy affiliates, many small
    assert counts.nlargest(len(affiliates) // 10).sum() > 0.4 * len(commissions) and counts.min() <= 2
    kinds = events["kind"].value_counts().to_dict()
    assert kinds == summary["events_by_kind"] and set(kinds) == {"cancellation", "reversal", "partial_reversal"}
    assert len(events) == summary["events"] == round(0.05 * len(commissions))


def test_timestamps_are_zoned_inside_the_month_and_events_come_after_their_commission(demo):
    files, _, commissions, events = demo
    assert commissions["earned_at"].str.fullmatch(ZONED.pattern).all()
    assert events["occurred_at"].str.fullmatch(ZONED.pattern).all()
    assert (
        commissions["earned_at"].str.endswith("Z").any()
        and commissions["earned_at"].str.contains(r"[+-]\d{2}:\d{2}$").any()
    )
    earned = pd.to_datetime(commissions["earned_at"], utc=True, format="ISO8601")
    assert ((earned >= MONTH_START) & (earned < MONTH_END)).all()
    ev = events.merge(commissions.assign(earned=earned)[["order_id", "earned"]], on="order_id")
    occurred = pd.to_datetime(ev["occurred_at"], utc=True, format="ISO8601")
    assert (occurred > ev["earned"]).all()
    assert (occurred < MONTH_END + timedelta(days=EVENT_GRACE_DAYS)).all()
    assert 0 < (occurred >= MONTH_END).sum() == files.summary["events_after_month"]


def test_parquet_holds_the_same_rows_as_csv_all_as_strings(tmp_path, demo):
    files, *csv_frames = demo
    parquet = write_demo_data(
        tmp_path, affiliates=300, commissions=4000, month=MONTH, seed=11, file_format="parquet", chunk_rows=1000
    )
    assert parquet.summary == {**files.summary, "file_format": "parquet"}
    for path, frame in zip((parquet.affiliates, parquet.commissions, parquet.order_events), csv_frames, strict=False):
        assert path.suffix == ".parquet"
        assert {str(t) for t in pq.read_schema(path).types} == {"string"}
        pd.testing.assert_frame_equal(pd.read_parquet(path), frame)


def test_default_month_is_the_last_complete_utc_month():
    assert default_month(date(2026, 1, 15)) == "2025-12"
    assert default_month(date(2026, 3, 1)) == "2026-02"
    assert default_month(date(2026, 3, 31)) == "2026-02"


def test_rejects_unknown_format_and_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="file_format"):
        write_demo_data(tmp_path, file_format="xlsx", month=MONTH)
    with pytest.raises(ValueError, match="affiliates >= 1"):
        write_demo_data(tmp_path, affiliates=0, month=MONTH)
    with pytest.raises(ValueError, match="event_share <= 1"):
        write_demo_data(tmp_path, event_share=1.5, month=MONTH)


def test_cli_writes_the_files_and_prints_where_and_what(tmp_path):
    from sorae_payouts.cli.demo_data_cmd import demo_data

    app = typer.Typer()
    app.command()(demo_data)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "--out",
            str(out),
            "--affiliates",
            "40",
            "--commissions",
            "500",
            "--month",
            "2026-02",
            "--format",
            "parquet",
            "--seed",
            "5",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "affiliates.parquet",
        "commissions.parquet",
        "order_events.parquet",
    ]
    expected = write_demo_data(
        tmp_path / "again", affiliates=40, commissions=500, month="2026-02", seed=5, file_format="parquet"
    ).summary
    assert "2026-02" in result.output and "commissions.parquet" in result.output
    assert f"{expected['gross_minor_by_currency']['jpy']} jpy" in result.output
    bad = CliRunner().invoke(app, ["--out", str(out), "--format", "xlsx"])
    assert bad.exit_code == 2 and "csv or parquet" in bad.output


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_program_id_adds_a_first_column_and_changes_nothing_else(tmp_path, file_format):
    plain = write_demo_data(
        tmp_path / "plain", affiliates=30, commissions=300, month=MONTH, seed=5, file_format=file_format
    )
    named = write_demo_data(
        tmp_path / "acme",
        affiliates=30,
        commissions=300,
        month=MONTH,
        seed=5,
        file_format=file_format,
        program_id="acme",
    )
    read = pd.read_csv if file_format == "csv" else pd.read_parquet
    for part in ("affiliates", "commissions", "order_events"):
        before, after = (
            read(getattr(files, part), **({"dtype": str} if file_format == "csv" else {})) for files in (plain, named)
        )
        assert list(after.columns) == ["program_id", *before.columns]
        assert (after["program_id"] == "acme").all() and len(after) == len(before) > 0
        pd.testing.assert_frame_equal(after.drop(columns="program_id"), before)
    assert named.summary == {**plain.summary, "program_id": "acme"}
    with pytest.raises(ValueError, match="not a program id"):
        write_demo_data(tmp_path / "bad", month=MONTH, program_id="Acme Corp")


def test_demo_files_of_two_programs_import_side_by_side(engine, tmp_path):
    from sorae_payouts.ingest import ImportKind, import_file
    from sorae_payouts.registry.programs import add_program

    add_program(engine, "acme", name="Acme", added_by="test", now=datetime(2026, 1, 10, tzinfo=UTC))
    written = {
        program: write_demo_data(
            tmp_path / program, affiliates=20, commissions=200, month=MONTH, seed=seed, program_id=program
        )
        for program, seed in (("default", 1), ("acme", 2))
    }
    for kind, part in (
        (ImportKind.AFFILIATES, "affiliates"),
        (ImportKind.COMMISSIONS, "commissions"),
        (ImportKind.ORDER_EVENTS, "order_events"),
    ):
        for files in written.values():
            report = import_file(engine, kind, getattr(files, part))
            assert report.rejected_count == 0 and report.inserted > 0, report.rejected[:3]
    with engine.connect() as conn:  # the same ids (aff_000001, com_0000001, ...) in both, kept apart
        counts = dict(conn.exec_driver_sql("SELECT program_id, COUNT(*) FROM commission GROUP BY program_id").all())
        gross = {
            (p, c): int(t)
            for p, c, t in conn.exec_driver_sql(
                "SELECT program_id, currency, SUM(amount_minor) FROM commission GROUP BY program_id, currency"
            )
        }
    assert counts == {"default": 200, "acme": 200}
    for program, files in written.items():
        assert {c: t for (p, c), t in gross.items() if p == program} == {
            c: t for c, t in files.summary["gross_minor_by_currency"].items() if t
        }
