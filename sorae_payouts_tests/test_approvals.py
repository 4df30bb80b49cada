"""Approvals are signatures of registered operators: the registry, the approval rules and the database
guards around them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import app
from sorae_payouts.core.origin import Origin
from sorae_payouts.core.signing import SigningKey
from sorae_payouts.month_end.approvals import (
    approve_batch,
    record_signed_approval,
    sign_approval,
    verify_batch_approvals,
)
from sorae_payouts.month_end.batches import BatchError, load_batch
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.registry.operators import normalize_identity
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    build_manifest,
    disable_operator,
    finalize_period,
    operator_key,
    register_operators,
    use_operator_key,
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


def _approve(engine, name: str, batch, **kwargs):
    return approve_batch(engine, OCT, key=operator_key(name), now=NOW, expected_hash=batch.manifest_hash, **kwargs)


def test_identity_normalization():
    assert {normalize_identity(s) for s in ("alice", "ALICE", " Alice ", "ａｌｉｃｅ", "Alice\u3000")} == {"alice"}
    assert normalize_identity("Alice@Corp.example") == "alice@corp.example" != normalize_identity("alice")


def test_one_operator_is_one_approver_and_the_key_says_who(engine, whale_batch):
    register_operators(engine, "alice", "bob")
    first = _approve(engine, "alice", whale_batch)
    assert (first.complete, first.approvers, first.required) == (False, ["alice"], 2)
    for spelling in ("ALICE", " Alice ", "ａｌｉｃｅ"):  # a name never chooses: alice's key is alice
        with pytest.raises(BatchError, match="already approved"):
            _approve(engine, "alice", whale_batch, acting_as=spelling)
    with pytest.raises(BatchError, match="--by names 'bob' but the key"):
        _approve(engine, "alice", whale_batch, acting_as="bob")
    done = _approve(engine, "bob", whale_batch, acting_as="ＢＯＢ")
    assert done.complete and done.batch.approved_by == "alice, bob"
    with engine.connect() as conn:
        assert verify_batch_approvals(conn, load_batch(conn, OCT)) == ["alice", "bob"]


def test_unknown_keys_disabled_operators_and_short_hashes_are_refused(engine, whale_batch):
    full = whale_batch.manifest_hash
    with pytest.raises(BatchError, match="is not the current key of an operator of program default"):
        approve_batch(engine, OCT, key=SigningKey.generate(), now=NOW, expected_hash=full)
    register_operators(engine, "alice", "carol")
    disable_operator(engine, "carol", by="alice")
    with pytest.raises(BatchError, match="carol' of program default is disabled"):
        _approve(engine, "carol", whale_batch)
    for reviewed in ("9", "", full[:11], "z" * 12, None):
        with pytest.raises(BatchError, match="at least 12 hex characters"):
            approve_batch(engine, OCT, key=operator_key("alice"), now=NOW, expected_hash=reviewed)
    approved = approve_batch(engine, OCT, key=operator_key("alice"), now=NOW, expected_hash=full[:12].upper())
    assert approved.approvers == ["alice"]


def test_approval_records_who_when_where_key_and_signature(engine, whale_batch):
    register_operators(engine, "Alice@Corp.example")
    _approve(engine, "alice@corp.example", whale_batch, origin=Origin("ops-host-1", "alice_unix", "run-1234"))
    row = _raw(
        engine,
        "SELECT operator_id, approved_by, host, os_user, dagster_run_id, program_id, key_id, signature "
        "FROM batch_approval",
    ).one()
    assert tuple(row)[:6] == (
        "alice@corp.example",
        "alice@corp.example",
        "ops-host-1",
        "alice_unix",
        "run-1234",
        "default",
    )
    assert row.key_id == operator_key("alice@corp.example").key_id and len(row.signature) == 88


def test_database_refuses_skipping_or_unsigned_approvals(engine, whale_batch):
    _refused(engine, "UPDATE payout_batch SET status = 'approved'", "registered approval")
    _refused(engine, "UPDATE payout_batch SET status = 'executing'", "can only become approved")
    register_operators(engine, "alice", "bob")
    insert = (
        "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, operator_id, key_id, "
        "signature) VALUES (:b, :by, :at, :h, :op, :k, :sig)"
    )
    params = {
        "b": whale_batch.batch_id,
        "by": "alice",
        "op": "alice",
        "at": NOW.isoformat(),
        "h": whale_batch.manifest_hash,
        "k": operator_key("alice").key_id,
        "sig": "A" * 88,
    }
    _refused(engine, insert, "carries the signature", {**params, "sig": None})
    _refused(engine, insert, "carries the signature", {**params, "k": None})
    _refused(engine, insert, "carries the signature", {**params, "k": operator_key("bob").key_id})  # bob's key
    _refused(engine, insert, "carries the signature", {**params, "by": "bob"})  # a name that is not the operator
    # A row of the right shape with a signature that is not alice's passes the database (it cannot verify
    # Ed25519) but never counts: the executor verifies every signature.
    _raw(engine, insert, params)
    _raw(engine, "UPDATE payout_batch SET status = 'approved'")
    with engine.connect() as conn, pytest.raises(BatchError, match="0 of the 2 approvals"):
        verify_batch_approvals(conn, load_batch(conn, OCT))


def test_operator_registry_is_append_only(engine):
    register_operators(engine, "alice", "bob")
    disable_operator(engine, "bob", by="alice")
    events = _raw(engine, "SELECT operator_id, event, recorded_by FROM operator_event ORDER BY event_pk").all()
    assert [tuple(e) for e in events][-1] == ("bob", "disabled", "alice")
    _refused(engine, "DELETE FROM operator", "never deleted")
    _refused(engine, "UPDATE operator SET operator_id = 'mallory'", "never changes")
    for table in (
        "operator_event",
        "operator_key",
        "operator_bootstrap",
        "operator_request",
        "program_approval_policy",
    ):
        _refused(engine, f"DELETE FROM {table}", "append-only")
    _refused(engine, "UPDATE operator_key SET public_key = 'x'", "append-only")


def test_an_approval_signed_while_the_operator_was_disabled_does_not_count(engine, whale_batch):
    """History decides: bob was disabled at T1 and re-enabled (confirmed) at T3; an approval he signs
    dated T2 passes the database (he is active now) but the executor does not count it."""
    register_operators(engine, "alice", "bob")
    _approve(engine, "alice", whale_batch)
    t1, t2, t3 = NOW - timedelta(days=3), NOW - timedelta(days=2), NOW - timedelta(days=1)
    disable_operator(engine, "bob", by="alice", now=t1)
    register_operators(engine, "bob", now=t3)  # re-enabled by a confirmed request
    signed = sign_approval(engine, OCT, key=operator_key("bob"), now=t2, expected_hash=whale_batch.manifest_hash)
    recorded = record_signed_approval(engine, OCT, signed, now=NOW)
    assert (recorded.complete, recorded.approvers) == (False, ["alice"])
    assert _raw(engine, "SELECT COUNT(*) FROM batch_approval").scalar_one() == 2
    with engine.connect() as conn, pytest.raises(BatchError, match="1 of the 2 approvals"):
        verify_batch_approvals(conn, load_batch(conn, OCT))


def test_operators_cli_keygen_bootstrap_add_confirm_disable(engine, ledger_url, monkeypatch, tmp_path, whale_batch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    monkeypatch.delenv("SORAE_MIGRATION_DATABASE_URL", raising=False)
    keys = {}
    for name in ("alice", "bob", "carol"):
        out = tmp_path / f"{name}.pem"
        made = runner.invoke(app, ["operators", "keygen", "--out", str(out)])
        assert made.exit_code == 0 and oct(out.stat().st_mode & 0o777) == "0o600", made.output
        keys[name] = (out, made.output.split("public key: ")[1].split()[0])
        assert "PRIVATE KEY" not in made.output
    again = runner.invoke(app, ["operators", "keygen", "--out", str(keys["alice"][0])])
    assert again.exit_code == 1 and "never overwritten" in again.output
    boot = ["operators", "bootstrap", "--by", "admin"]
    for name in ("alice", "bob"):
        boot += ["--operator", f"{name}={keys[name][1]}"]
    assert runner.invoke(app, boot).exit_code == 0
    monkeypatch.setenv("SORAE_OPERATOR_KEY", str(keys["alice"][0]))
    added = runner.invoke(app, ["operators", "add", " Carol@Corp ", "--public-key", keys["carol"][1], "--name", "C"])
    assert added.exit_code == 0 and "pending" in added.output, added.output
    listed = json.loads(runner.invoke(app, ["operators", "list", "--json"]).output)
    assert [o["operator_id"] for o in listed] == ["alice", "bob"]  # not before a second operator confirms
    [pending] = json.loads(runner.invoke(app, ["operators", "pending", "--json"]).output)
    own = runner.invoke(app, ["operators", "confirm", str(pending["request_pk"])])
    assert own.exit_code == 1 and "another operator than the one who asked" in own.output
    monkeypatch.setenv("SORAE_OPERATOR_KEY", str(keys["bob"][0]))
    assert runner.invoke(app, ["operators", "confirm", str(pending["request_pk"])]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["operators", "list", "--json"]).output)
    assert [(o["operator_id"], o["display_name"], o["status"]) for o in listed][-1] == ("carol@corp", "C", "active")
    assert runner.invoke(app, ["operators", "disable", "carol@corp"]).exit_code == 0
    monkeypatch.setenv("SORAE_OPERATOR_KEY", str(keys["carol"][0]))
    refused = runner.invoke(app, ["batch", "approve", "2026-10", "--hash", whale_batch.manifest_hash])
    assert refused.exit_code == 1 and "is disabled" in refused.output
    monkeypatch.delenv("SORAE_OPERATOR_KEY")
    unset = runner.invoke(app, ["batch", "approve", "2026-10", "--hash", whale_batch.manifest_hash])
    assert unset.exit_code == 1 and "SORAE_OPERATOR_KEY is not set" in unset.output
    use_operator_key(monkeypatch, tmp_path, "nobody")
    unknown = runner.invoke(app, ["batch", "approve", "2026-10", "--hash", whale_batch.manifest_hash])
    assert unknown.exit_code == 1 and "not the current key of an operator" in unknown.output


def test_an_operator_added_by_confirmation_counts_even_at_the_bootstraps_instant(engine, whale_batch):
    """The history orders a bootstrap before the requests its operators confirm at the same instant."""
    register_operators(engine, "alice", "bob")
    register_operators(engine, "carol")  # requested by one test operator, confirmed by another, same time
    _approve(engine, "alice", whale_batch)
    assert _approve(engine, "carol", whale_batch).complete
    with engine.connect() as conn:
        assert verify_batch_approvals(conn, load_batch(conn, OCT)) == ["alice", "carol"]
