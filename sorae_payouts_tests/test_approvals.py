"""Approvals are verified identities: the operator registry, the approval rules and the database
guards around them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import app
from sorae_payouts.core.origin import Origin
from sorae_payouts.month_end.approvals import approve_batch, verify_batch_approvals
from sorae_payouts.month_end.batches import BatchError, load_batch
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.registry.operators import normalize_identity, set_operator_status
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    REGISTERED_AT,
    add_affiliate,
    add_commission,
    build_manifest,
    finalize_period,
    register_operators,
)

runner = CliRunner()
DUAL = PayoutPolicy.from_major({"usd": "1.00"}, {"usd": "100000.00"})


@pytest.fixture
def whale_batch(engine):
    """A draft batch of 150,000.00 usd: above the policy's dual-approval amount."""
    add_affiliate(engine, "whale")
    add_commission(engine, "whale", 15_000_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    return build_manifest(engine, OCT, policy=DUAL, now=NOW)


def _raw(engine, statement: str, params: dict | None = None):
    with engine.begin() as conn:
        return conn.execute(sa.text(statement), params or {})


def _refused(engine, statement: str, match: str, params: dict | None = None) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=match):
        _raw(engine, statement, params)


def test_identity_normalization():
    assert {normalize_identity(s) for s in ("alice", "ALICE", " Alice ", "ａｌｉｃｅ", "Alice\u3000")} == {"alice"}
    assert normalize_identity("Alice@Corp.example") == "alice@corp.example" != normalize_identity("alice")


def test_one_identity_is_one_approver_in_any_spelling(engine, whale_batch):
    register_operators(engine, "alice", "bob")
    first = approve_batch(engine, OCT, approved_by="alice", now=NOW, expected_hash=whale_batch.manifest_hash)
    assert (first.complete, first.approvers, first.required) == (False, ["alice"], 2)
    for spelling in ("ALICE", " Alice ", "ａｌｉｃｅ"):
        with pytest.raises(BatchError, match="already approved"):
            approve_batch(engine, OCT, approved_by=spelling, now=NOW, expected_hash=whale_batch.manifest_hash)
    done = approve_batch(engine, OCT, approved_by="ＢＯＢ", now=NOW, expected_hash=whale_batch.manifest_hash)
    assert done.complete and done.batch.approved_by == "alice, bob"
    with engine.connect() as conn:
        assert verify_batch_approvals(conn, load_batch(conn, OCT)) == ["alice", "bob"]


def test_unregistered_disabled_and_short_hashes_are_refused(engine, whale_batch):
    full = whale_batch.manifest_hash
    with pytest.raises(BatchError, match="not a registered operator"):
        approve_batch(engine, OCT, approved_by="mallory", now=NOW, expected_hash=full)
    register_operators(engine, "carol")
    set_operator_status(engine, "carol", active=False, changed_by="admin", now=NOW)
    with pytest.raises(BatchError, match="is disabled"):
        approve_batch(engine, OCT, approved_by="Carol", now=NOW, expected_hash=full)
    register_operators(engine, "alice")
    for reviewed in ("9", "", full[:11], "z" * 12, None):
        with pytest.raises(BatchError, match="at least 12 hex characters"):
            approve_batch(engine, OCT, approved_by="alice", now=NOW, expected_hash=reviewed)
    assert approve_batch(engine, OCT, approved_by="alice", now=NOW, expected_hash=full[:12].upper()).approvers == [
        "alice"
    ]


def test_approval_records_who_when_and_from_where(engine, whale_batch):
    register_operators(engine, "Alice@Corp.example")
    approve_batch(
        engine,
        OCT,
        approved_by=" alice@corp.EXAMPLE",
        now=NOW,
        expected_hash=whale_batch.manifest_hash,
        origin=Origin("ops-host-1", "alice_unix", "run-1234"),
    )
    row = _raw(
        engine, "SELECT operator_id, approved_by, host, os_user, dagster_run_id, program_id FROM batch_approval"
    ).one()
    assert tuple(row) == ("alice@corp.example", "alice@corp.example", "ops-host-1", "alice_unix", "run-1234", "default")


def test_database_refuses_skipping_or_forging_approvals(engine, whale_batch):
    _refused(engine, "UPDATE payout_batch SET status = 'approved'", "registered approval")
    _refused(engine, "UPDATE payout_batch SET status = 'executing'", "can only become approved")
    _refused(engine, "UPDATE payout_batch SET status = 'completed'", "can only become approved")
    insert = (
        "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, operator_id) "
        "VALUES (:b, :by, :at, :h, :op)"
    )
    params = {"b": whale_batch.batch_id, "by": "ghost", "at": NOW.isoformat(), "h": whale_batch.manifest_hash}
    _refused(engine, insert, "active registered operator", {**params, "op": None})
    _refused(engine, insert, "active registered operator", {**params, "op": "ghost"})
    register_operators(engine, "ghost")
    set_operator_status(engine, "ghost", active=False, changed_by="admin", now=NOW)
    _refused(engine, insert, "active registered operator", {**params, "op": "ghost"})
    _refused(
        engine,
        "INSERT INTO payout_batch (batch_id, period, status, manifest_hash, item_count, policy, "
        "created_at, built_at) SELECT 'forged', period, 'approved', manifest_hash, item_count, policy, "
        "created_at, built_at FROM payout_batch",
        "starts as a draft",
    )
    # One registered approval satisfies the database; the exact count (2 here) is the executor's check.
    register_operators(engine, "alice")
    approve_batch(engine, OCT, approved_by="alice", now=NOW, expected_hash=whale_batch.manifest_hash)
    _raw(engine, "UPDATE payout_batch SET status = 'approved'")
    with engine.connect() as conn, pytest.raises(BatchError, match="1 of the 2 approvals"):
        verify_batch_approvals(conn, load_batch(conn, OCT))


def test_operator_registry_is_append_only(engine):
    register_operators(engine, "alice")
    set_operator_status(engine, "alice", active=False, changed_by="admin", now=NOW)
    events = _raw(engine, "SELECT event, recorded_by FROM operator_event ORDER BY event_pk").all()
    assert [tuple(e) for e in events] == [("added", "tests"), ("disabled", "admin")]
    _refused(engine, "DELETE FROM operator", "never deleted")
    _refused(engine, "UPDATE operator SET operator_id = 'mallory'", "never changes")
    _refused(engine, "UPDATE operator_event SET event = 'enabled'", "append-only")
    _refused(engine, "DELETE FROM operator_event", "append-only")


def test_an_approver_disabled_before_approving_does_not_count(engine, whale_batch):
    """History decides: an approval row of an identity inactive at that time (only possible behind the
    guards' back) is not counted by the executor's check."""
    register_operators(engine, "alice", "bob")
    approve_batch(engine, OCT, approved_by="alice", now=NOW, expected_hash=whale_batch.manifest_hash)
    set_operator_status(engine, "bob", active=False, changed_by="admin", now=REGISTERED_AT.replace(year=2001))
    set_operator_status(engine, "bob", active=True, changed_by="admin", now=NOW.replace(year=2030))
    approve_batch(engine, OCT, approved_by="bob", now=NOW, expected_hash=whale_batch.manifest_hash)  # active now
    with engine.connect() as conn, pytest.raises(BatchError, match="1 of the 2 approvals"):
        verify_batch_approvals(conn, load_batch(conn, OCT))


def test_operators_cli_add_list_disable(engine, ledger_url, monkeypatch, whale_batch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    added = runner.invoke(app, ["operators", "add", " Alice@Corp.example ", "--name", "Alice A.", "--by", "root"])
    assert added.exit_code == 0 and "alice@corp.example" in added.output, added.output
    again = runner.invoke(app, ["operators", "add", "ALICE@corp.example"])
    assert again.exit_code == 1 and "already registered" in again.output
    listed = json.loads(runner.invoke(app, ["operators", "list", "--json"]).output)
    assert [(o["operator_id"], o["display_name"], o["status"], o["added_by"]) for o in listed] == [
        ("alice@corp.example", "Alice A.", "active", "root")
    ]
    assert runner.invoke(app, ["operators", "disable", "alice@CORP.example", "--by", "root"]).exit_code == 0
    refused = runner.invoke(
        app, ["batch", "approve", "2026-10", "--by", "alice@corp.example", "--hash", whale_batch.manifest_hash]
    )
    assert refused.exit_code == 1 and "disabled" in refused.output
    for bad in ("9", ""):
        short = runner.invoke(app, ["batch", "approve", "2026-10", "--by", "alice@corp.example", "--hash", bad])
        assert short.exit_code == 1 and "at least 12 hex characters" in short.output
