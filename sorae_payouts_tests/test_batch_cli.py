"""`sorae-payouts batch ...` against a real ledger on both backends."""

from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import app
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    build_manifest,
    finalize_period,
    register_operators,
    use_operator_key,
)

runner = CliRunner()


@pytest.fixture
def built(engine, ledger_url, monkeypatch, tmp_path):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    add_affiliate(engine, "alice")
    add_affiliate(engine, "bob", account=None)
    add_affiliate(engine, "kenji", currency="jpy")
    add_commission(engine, "alice", 12_345)
    add_commission(engine, "bob", 6_000)
    add_commission(engine, "kenji", 500, currency="jpy")
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    register_operators(engine, "ops")
    use_operator_key(monkeypatch, tmp_path, "ops")  # the CLI signs with the key SORAE_OPERATOR_KEY names
    return build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "50.00", "jpy": "5000"}), now=NOW)


def _invoke(*args):
    result = runner.invoke(app, list(args))
    return result


def test_show_json_lists_every_item(built):
    result = _invoke("batch", "show", "2026-10", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["batch"]["status"] == "draft" and data["batch"]["manifest_hash"] == built.manifest_hash
    items = {(i["affiliate_id"], i["currency"]): i for i in data["items"]}
    assert items[("alice", "usd")]["amount_minor"] == 12_345 and items[("alice", "usd")]["status"] == "pending"
    bob = items[("bob", "usd")]
    assert (bob["stripe_account_id"], bob["status"], bob["carry_reason"]) == (None, "carried_forward", "not_onboarded")
    assert items[("kenji", "jpy")]["status"] == "carried_forward" and items[("kenji", "jpy")]["amount_minor"] == 500


def test_show_table_and_list(built):
    shown = _invoke("batch", "show", "2026-10")
    assert shown.exit_code == 0 and "payout_2026-10" in shown.output and "123.45 usd" in shown.output
    listed = _invoke("batch", "list", "--json")
    assert [b["batch_id"] for b in json.loads(listed.output)] == ["payout_2026-10"]


def test_export_writes_exact_amounts(built, tmp_path):
    out = tmp_path / "manifest.csv"
    assert _invoke("batch", "export", "2026-10", "--csv", str(out)).exit_code == 0
    rows = {r["affiliate_id"]: r for r in csv.DictReader(out.open())}
    assert (rows["alice"]["amount"], rows["alice"]["amount_minor"]) == ("123.45", "12345")
    assert rows["kenji"]["amount"] == "500"


def test_approve_records_who_and_freezes(built, engine):
    refused = _invoke("batch", "approve", "2026-10", "--by", "ops", "--hash", "deadbeef0000")
    assert refused.exit_code == 1 and "not the reviewed" in refused.output
    approved = _invoke("batch", "approve", "2026-10", "--by", "ops", "--hash", built.manifest_hash[:12])
    assert approved.exit_code == 0, approved.output
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, approved_by FROM payout_batch")).one()
    assert tuple(row) == ("approved", "ops")
    again = _invoke("batch", "approve", "2026-10", "--by", "ops", "--hash", built.manifest_hash)
    assert again.exit_code == 1 and "nothing to approve" in again.output
    rebuilt = build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW)
    assert rebuilt.outcome == "frozen" and rebuilt.manifest_hash == built.manifest_hash


def test_approve_refuses_a_manifest_changed_after_build(built, engine):
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE payout_item SET amount_minor = amount_minor + 100, "
                "period_amount_minor = period_amount_minor + 100 WHERE affiliate_id = 'alice'"
            )
        )
    result = _invoke("batch", "approve", "2026-10", "--by", "ops", "--hash", built.manifest_hash)
    assert result.exit_code == 1 and "changed since it was built" in result.output


def test_unknown_period_is_a_clear_error(built):
    result = _invoke("batch", "show", "2026-07")
    assert result.exit_code == 1 and "no payout batch for 2026-07" in result.output


def test_large_batch_needs_two_different_approvers_and_a_rebuild_resets_them(engine, ledger_url, monkeypatch, tmp_path):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    add_affiliate(engine, "whale")
    add_commission(engine, "whale", 20_000_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    dual = PayoutPolicy.from_major({"usd": "50.00"}, {"usd": "100000.00"})
    old = build_manifest(engine, OCT, policy=dual, now=NOW).manifest_hash
    register_operators(engine, "ana", "ben")
    use_operator_key(monkeypatch, tmp_path, "ana")
    first = _invoke("batch", "approve", "2026-10", "--by", "ana", "--hash", old)
    assert first.exit_code == 0 and "1 of 2 approvals" in first.output
    # The draft is rebuilt under another policy: the approval given to the old manifest no longer counts.
    rebuilt = build_manifest(
        engine, OCT, policy=PayoutPolicy.from_major({"usd": "40.00"}, {"usd": "100000.00"}), now=NOW
    )
    assert rebuilt.outcome == "rebuilt"
    new = rebuilt.manifest_hash[:12]
    use_operator_key(monkeypatch, tmp_path, "ben")
    assert "1 of 2 approvals" in _invoke("batch", "approve", "2026-10", "--by", "ben", "--hash", new).output
    again = _invoke("batch", "approve", "2026-10", "--by", " BEN ", "--hash", new)
    assert again.exit_code == 1 and "someone else" in again.output
    # Typing a colleague's name does not make you them: the key decides who approves.
    posing = _invoke("batch", "approve", "2026-10", "--by", "ana", "--hash", new)
    assert posing.exit_code == 1 and "--by names 'ana' but the key" in posing.output
    use_operator_key(monkeypatch, tmp_path, "ana")
    done = _invoke("batch", "approve", "2026-10", "--hash", new)
    assert done.exit_code == 0 and "approved" in done.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT approved_by FROM payout_batch")).scalar_one() == "ben, ana"
        assert conn.execute(sa.text("SELECT COUNT(*) FROM batch_approval")).scalar_one() == 3
