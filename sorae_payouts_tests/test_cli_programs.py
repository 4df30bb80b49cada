"""`--program` on the batch, history and operations commands, and `batch list` across programs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sorae_payouts.cli.main import build_app
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_program,
    approve,
    build_manifest,
    finalize_period,
    use_operator_key,
)

runner = CliRunner()


@pytest.fixture
def two_programs(engine, ledger_url, monkeypatch):
    """The same affiliate id `alice` in the default program and in acme, each with its October batch."""
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    add_program(engine, "acme", name="Acme Shoes")
    for program_id, amount in (("default", 12_345), ("acme", 70_000)):
        add_affiliate(engine, "alice", program_id=program_id)
        add_commission(engine, "alice", amount, program_id=program_id)
        finalize_period(engine, OCT, now=NOW, holding_days=3, program_id=program_id)
        build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW, program_id=program_id)
    approve(engine, OCT, "ops-acme", program_id="acme")
    return engine


def _json(*args):
    result = runner.invoke(build_app(), list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_batch_list_spans_programs_and_filters(two_programs):
    every = _json("batch", "list", "--json")
    assert [(b["program_id"], b["batch_id"], b["status"]) for b in every] == [
        ("acme", "payout_acme_2026-10", "approved"),
        ("default", "payout_2026-10", "draft"),
    ]
    assert [b["program_id"] for b in _json("batch", "list", "--json", "--program", "acme")] == ["acme"]
    assert [b["program_id"] for b in _json("batch", "list", "--json", "--status", "draft")] == ["default"]
    assert _json("batch", "list", "--json", "--from", "2026-11") == []


def test_show_needs_a_program_once_two_have_the_month(two_programs):
    ambiguous = runner.invoke(build_app(), ["batch", "show", "2026-10", "--json"])
    assert ambiguous.exit_code == 1 and "--program" in ambiguous.output and "acme" in ambiguous.output
    acme = _json("batch", "show", "2026-10", "--json", "--program", "acme")
    assert acme["batch"]["batch_id"] == "payout_acme_2026-10"
    assert [(i["affiliate_id"], i["amount_minor"]) for i in acme["items"]] == [("alice", 70_000)]
    default = _json("batch", "show", "2026-10", "--json", "--program", "default")
    assert [(i["affiliate_id"], i["amount_minor"]) for i in default["items"]] == [("alice", 12_345)]
    unknown = runner.invoke(build_app(), ["batch", "show", "2026-10", "--program", "nope"])
    assert unknown.exit_code == 1 and "unknown program" in unknown.output


def test_approve_as_an_operator_of_the_batch_program_only(two_programs, monkeypatch, tmp_path):
    default_hash = _json("batch", "show", "2026-10", "--json", "--program", "default")["batch"]["manifest_hash"]
    use_operator_key(monkeypatch, tmp_path, "ops-acme", program_id="acme")  # acme's operator, acme's key
    refused = runner.invoke(
        build_app(), ["batch", "approve", "2026-10", "--program", "default", "--by", "ops-acme", "--hash", default_hash]
    )
    assert refused.exit_code == 1 and "is not the current key of an operator of program default" in refused.output


def test_export_names_the_program(two_programs, tmp_path):
    out = tmp_path / "acme.csv"
    result = runner.invoke(build_app(), ["batch", "export", "2026-10", "--program", "acme", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    header, row = out.read_text().splitlines()[:2]
    assert header.startswith("program_id,batch_id") and row.startswith("acme,payout_acme_2026-10")


def test_history_across_the_programs_of_one_affiliate_id(two_programs):
    both = _json("history", "alice", "--json")
    assert sorted((e["program_id"], e["amount_minor"]) for e in both) == [("acme", 70_000), ("default", 12_345)]
    only = _json("history", "alice", "--json", "--program", "acme")
    assert [(e["program_id"], e["merchant"]) for e in only] == [("acme", "Acme Shoes")]


def test_a_single_program_needs_no_flag(engine, ledger_url, monkeypatch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    add_affiliate(engine, "alice")
    add_commission(engine, "alice", 5_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW)
    shown = _json("batch", "show", "2026-10", "--json")
    assert shown["batch"]["program_id"] == "default"
