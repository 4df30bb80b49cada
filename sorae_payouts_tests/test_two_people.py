"""Issue 16, defect 5: one person can no longer meet the two-person rule, by any route found.

alice and bob are the program's operators; the batch (150,000.00 usd) needs two of them. Each test is
one route a single person (alice) tried, on SQLite and PostgreSQL: through the engine's own commands,
and behind its back with the DML the application's role has (what the database then refuses, or what
the executor's verification ignores).
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import app
from sorae_payouts.core.signing import SigningKey
from sorae_payouts.month_end.approvals import (
    APPROVAL,
    approval_fields,
    approve_batch,
    verify_batch_approvals,
)
from sorae_payouts.month_end.batches import BatchError, load_batch
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.registry.operator_bootstrap import NewOperator, bootstrap_operators
from sorae_payouts.registry.operator_changes import (
    confirm_request,
    request_change,
)
from sorae_payouts.registry.operator_history import RegistryHistory
from sorae_payouts.registry.operators import OperatorError
from sorae_payouts.registry.programs import ProgramError, update_program
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_program,
    build_manifest,
    disable_operator,
    finalize_period,
    operator_key,
    register_operators,
    use_operator_key,
)

runner = CliRunner()
DUAL = PayoutPolicy.from_major({"usd": "1.00"}, {"usd": "100000.00"})
ALICE2 = SigningKey.generate()  # the second identity's key: alice generated it, alice holds it


@pytest.fixture
def whale(engine):
    """alice and bob operate the default program; its October batch pays 150,000.00 usd (two approvals)."""
    register_operators(engine, "alice", "bob")
    add_affiliate(engine, "whale")
    add_commission(engine, "whale", 15_000_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    return build_manifest(engine, OCT, policy=DUAL, now=NOW)


def _approve(engine, key: SigningKey, batch, program_id: str = "default"):
    return approve_batch(engine, OCT, key=key, now=NOW, expected_hash=batch.manifest_hash, program_id=program_id)


def _verified(engine) -> list[str]:
    with engine.connect() as conn:
        return verify_batch_approvals(conn, load_batch(conn, OCT))


def _raw(engine, statement: str, params: dict | None = None):
    with engine.begin() as conn:
        return conn.execute(sa.text(statement), params or {})


def _refused(engine, statement: str, match: str, params: dict | None = None) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=match):
        _raw(engine, statement, params)


def test_the_insider_registering_a_second_identity_through_the_cli(engine, ledger_url, monkeypatch, tmp_path, whale):
    """The issue's route: `operators add alice2@corp --by alice`, then approve as both."""
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    use_operator_key(monkeypatch, tmp_path, "alice")
    added = runner.invoke(app, ["operators", "add", "alice2@corp", "--public-key", ALICE2.public_key, "--by", "alice"])
    assert added.exit_code == 0 and "pending" in added.output, added.output
    [pending] = json.loads(runner.invoke(app, ["operators", "pending", "--json"]).output)
    own = runner.invoke(app, ["operators", "confirm", str(pending["request_pk"])])
    assert own.exit_code == 1 and "another operator than the one who asked" in own.output
    assert _approve(engine, operator_key("alice"), whale).approvers == ["alice"]
    with pytest.raises(BatchError, match="is not the current key of an operator"):
        _approve(engine, ALICE2, whale)  # alice2 does not exist until bob confirms
    with pytest.raises(OperatorError, match="already 'alice'"):  # nor can alice's own key be a second person
        request_change(
            engine,
            "default",
            operator_key("alice"),
            "add",
            subject="alice3",
            public_key=operator_key("alice").public_key,
            now=NOW,
        )
    assert _verified_count(engine) == (["alice"], "draft")


def _verified_count(engine):
    with engine.connect() as conn:
        batch = load_batch(conn, OCT)
        from sorae_payouts.month_end.approvals import approval_identities

        return approval_identities(conn, batch), batch.status


def test_the_insider_writing_the_second_identity_into_the_ledger(engine, whale):
    """Behind the engine's back: a key, an operator, a request and a confirmation typed in by hand."""
    key_row = {"k": ALICE2.key_id, "pub": ALICE2.public_key, "at": NOW.isoformat()}
    _refused(
        engine,
        "INSERT INTO operator_key (program_id, operator_id, key_id, public_key, registered_at, bootstrap_pk) "
        "SELECT 'default', 'alice2', :k, :pub, :at, MIN(bootstrap_pk) FROM operator_bootstrap",
        "registered by a bootstrap of the database owner or by a request confirmed",
        key_row,
    )
    _refused(
        engine,
        "INSERT INTO operator (program_id, operator_id, display_name, status, added_at, added_by, key_id) "
        "VALUES ('default', 'alice2', 'Alice Two', 'active', :at, 'alice', :k)",
        "a new operator needs its registered key",
        key_row,
    )
    bootstrap = (
        "INSERT INTO operator_bootstrap (program_id, operator_count, recorded_by, recorded_at) "
        "VALUES ('default', 1, 'alice', :at)"
    )
    if engine.dialect.name == "sqlite":  # PostgreSQL: the app role's refusal is in test_least_privilege.py
        _refused(engine, bootstrap, "once, for a program that has no operator key yet", key_row)
    # A request by alice and a "confirmation by bob" whose signature alice cannot make: the database
    # checks its shape only (it cannot verify Ed25519), the executor checks the signature.
    request = request_change(
        engine, "default", operator_key("alice"), "add", subject="alice2", public_key=ALICE2.public_key, now=NOW
    )
    _raw(
        engine,
        "INSERT INTO operator_confirmation (request_pk, program_id, confirmed_by, confirmer_key_id, confirmed_at, "
        "signature) VALUES (:r, 'default', 'bob', :k, :at, :sig)",
        {"r": request.request_pk, "k": operator_key("bob").key_id, "at": NOW, "sig": "B" * 88},
    )
    _raw(
        engine,
        "INSERT INTO operator_key (program_id, operator_id, key_id, public_key, registered_at, request_pk) "
        "VALUES ('default', 'alice2', :k, :pub, :at, :r)",
        {**key_row, "at": NOW, "r": request.request_pk},
    )
    _raw(
        engine,
        "INSERT INTO operator (program_id, operator_id, display_name, status, added_at, added_by, key_id, "
        "request_pk) VALUES ('default', 'alice2', 'Alice Two', 'active', :at, 'alice', :k, :r)",
        {**key_row, "at": NOW, "r": request.request_pk},
    )
    _approve(engine, operator_key("alice"), whale)
    second = _approve(engine, ALICE2, whale)  # the database takes it: alice2 looks registered...
    assert second.approvers == ["alice"] and not second.complete  # ...the verified history does not
    _raw(engine, "UPDATE payout_batch SET status = 'approved'")
    with pytest.raises(BatchError, match="1 of the 2 approvals"):
        _verified(engine)
    with engine.connect() as conn:
        ignored = RegistryHistory.load(conn, "default").ignored
    assert any("confirmation's signature does not verify" in why for why in ignored)


def test_a_second_bootstrap_is_the_database_owners_only(engine, whale):
    """SQLite has no roles: a program is bootstrapped once (its first operators). PostgreSQL: the owner
    role only (the app role's refusal is in test_least_privilege.py); the tests connect as the owner."""
    new = [NewOperator("alice2", ALICE2.public_key)]
    if engine.dialect.name == "sqlite":
        with pytest.raises(OperatorError, match="once, for a program that has no operator key yet"):
            bootstrap_operators(engine, "default", new, recorded_by="alice", now=NOW)
    else:
        assert [o.operator_id for o in bootstrap_operators(engine, "default", new, recorded_by="dba", now=NOW)]
    with pytest.raises(OperatorError, match="one key, one person|once, for a program"):
        bootstrap_operators(
            engine, "default", [NewOperator("bob2", operator_key("bob").public_key)], recorded_by="x", now=NOW
        )


def test_a_typed_name_or_a_colleagues_name_approves_nothing(engine, whale):
    with pytest.raises(BatchError, match="--by names 'bob' but the key"):
        approve_batch(
            engine, OCT, key=operator_key("alice"), now=NOW, expected_hash=whale.manifest_hash, acting_as="bob"
        )
    # A row naming bob with alice's key, or bob's key id with alice's signature.
    at = NOW.isoformat()
    insert = (
        "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, operator_id, key_id, "
        "signature) VALUES (:b, 'bob', :at, :h, 'bob', :k, :sig)"
    )
    params = {"b": whale.batch_id, "at": at, "h": whale.manifest_hash}
    alice_sig = operator_key("alice").sign(
        APPROVAL, approval_fields(whale_batch_of(engine), "bob", operator_key("bob").key_id, NOW)
    )
    _refused(engine, insert, "carries the signature", {**params, "k": operator_key("alice").key_id, "sig": alice_sig})
    _raw(engine, insert, {**params, "at": NOW, "k": operator_key("bob").key_id, "sig": alice_sig})
    _approve(engine, operator_key("alice"), whale)
    _raw(engine, "UPDATE payout_batch SET status = 'approved'")
    with pytest.raises(BatchError, match=r"1 of the 2 approvals .*\(approved by: alice\)"):
        _verified(engine)


def whale_batch_of(engine):
    with engine.connect() as conn:
        return load_batch(conn, OCT)


def test_raising_the_threshold_takes_two_people(engine, ledger_url, monkeypatch, tmp_path, whale):
    """The issue's second route: raise the program's --dual-approval-over, then approve alone."""
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    use_operator_key(monkeypatch, tmp_path, "alice")
    raised = runner.invoke(app, ["programs", "update", "default", "--dual-approval-over", "usd=1000000"])
    assert raised.exit_code == 1 and "second operator's confirmation" in raised.output
    with pytest.raises(ProgramError, match="second operator's confirmation"):
        update_program(engine, "default", changed_by="alice", now=NOW, policy_removals=("dual_approval_over_minor",))
    _refused(
        engine,
        'UPDATE program SET policy = \'{"dual_approval_over_minor": {"usd": 100000000}}\' '
        "WHERE program_id = 'default'",
        "change only to a confirmed approval policy",
    )
    asked = runner.invoke(app, ["operators", "request-policy", "--dual-approval-over", "usd=1000000"])
    assert asked.exit_code == 0 and "pending" in asked.output, asked.output
    [pending] = json.loads(runner.invoke(app, ["operators", "pending", "--json"]).output)
    own = runner.invoke(app, ["operators", "confirm", str(pending["request_pk"])])
    assert own.exit_code == 1
    # The batch was also rebuilt by hand with a lax frozen threshold (a run config can do that): alice alone
    # does not make it approved, and a status set by hand pays nothing.
    lax = build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}, {"usd": "99999999"}), now=NOW)
    alone = _approve(engine, operator_key("alice"), lax)
    assert (alone.required, alone.complete) == (2, False)
    _raw(engine, "UPDATE payout_batch SET status = 'approved'")
    with pytest.raises(BatchError, match="1 of the 2 approvals"):
        _verified(engine)
    # With bob's confirmation the program's threshold is raised: two people decided it.
    use_operator_key(monkeypatch, tmp_path, "bob")
    assert runner.invoke(app, ["operators", "confirm", str(pending["request_pk"])]).exit_code == 0
    assert _verified(engine) == ["alice"]
    shown = json.loads(runner.invoke(app, ["programs", "show", "default", "--json"]).output)
    assert shown["policy"]["dual_approval_over_minor"] == {"usd": 100_000_000}


def test_re_enabling_renaming_or_rekeying_takes_two_people(engine, whale):
    register_operators(engine, "carol")
    disable_operator(engine, "carol", by="alice")
    changes = (("enable", {}), ("rename", {"display_name": "Bob Smith"}), ("rekey", {"public_key": ALICE2.public_key}))
    for kind, values in changes:
        subject = "bob" if kind == "rename" else "carol"
        request = request_change(engine, "default", operator_key("alice"), kind, subject=subject, now=NOW, **values)
        with pytest.raises(OperatorError, match="another operator than the one who asked"):
            confirm_request(engine, "default", request.request_pk, operator_key("alice"), now=NOW)
    request = request_change(
        engine, "default", operator_key("alice"), "rename", subject="bob", display_name="B2", now=NOW
    )
    with pytest.raises(OperatorError, match="than the one who asked for it and the one it is about"):
        confirm_request(engine, "default", request.request_pk, operator_key("bob"), now=NOW)
    # By hand: each refused by the database without a confirmed request.
    _refused(engine, "UPDATE operator SET status = 'active' WHERE operator_id = 'carol'", "enabled only by a request")
    _refused(engine, "UPDATE operator SET display_name = 'Bob Smith' WHERE operator_id = 'alice'", "renamed only")
    _refused(
        engine,
        "UPDATE operator SET key_id = :k WHERE operator_id = 'carol'",
        "changes only to the latest key",
        {"k": operator_key("alice").key_id},
    )


def test_forged_and_replayed_signatures_do_not_count(engine, whale):
    """bob's real signatures replayed onto this batch's approval: of another batch, of another manifest
    hash, of another time; and a made-up one. Each row passes the database's shape check; none counts."""
    _approve(engine, operator_key("alice"), whale)
    bob, batch = operator_key("bob"), whale_batch_of(engine)
    fields = approval_fields(batch, "bob", bob.key_id, NOW)
    signatures = [
        bob.sign(APPROVAL, {**fields, "batch_id": "payout_2026-09"}),
        bob.sign(APPROVAL, {**fields, "manifest_hash": "0" * 64}),
        bob.sign(APPROVAL, approval_fields(batch, "bob", bob.key_id, NOW.replace(second=1))),
        bob.sign(APPROVAL, {**fields, "program": "acme"}),
        "B" * 88,
    ]
    for signature in signatures:
        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(
                sa.text(
                    "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, operator_id, "
                    "key_id, signature) VALUES (:b, 'bob', :at, :h, 'bob', :k, :sig)"
                ).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True))),
                {"b": batch.batch_id, "at": NOW, "h": batch.manifest_hash, "k": bob.key_id, "sig": signature},
            )
            conn.execute(sa.text("UPDATE payout_batch SET status = 'approved'"))
            with pytest.raises(BatchError, match="1 of the 2 approvals"):
                verify_batch_approvals(conn, load_batch(conn, OCT))
            transaction.rollback()
    assert _approve(engine, bob, whale).complete  # bob's own signature of this very approval counts
    assert _verified(engine) == ["alice", "bob"]


def test_a_key_of_another_programs_operator_approves_nothing_here(engine, whale):
    add_program(engine, "acme")
    register_operators(engine, "mallory", program_id="acme")
    with pytest.raises(BatchError, match="is not the current key of an operator of program default"):
        _approve(engine, operator_key("mallory", "acme"), whale)
    _refused(
        engine,
        "INSERT INTO batch_approval (batch_id, approved_by, approved_at, manifest_hash, operator_id, key_id, "
        "signature) VALUES (:b, 'mallory', :at, :h, 'mallory', :k, :sig)",
        "carries the signature|active registered operator",
        {
            "b": whale.batch_id,
            "at": NOW,
            "h": whale.manifest_hash,
            "k": operator_key("mallory", "acme").key_id,
            "sig": "M" * 88,
        },
    )
