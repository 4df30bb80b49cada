"""The program registry: ids, who pays (a reference, never a key), policy overrides, appended history,
the database's guards on programs, and `sorae-payouts programs ...`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import build_app
from sorae_payouts.registry.programs import (
    ProgramError,
    add_program,
    get_program,
    list_programs,
    program_history,
    set_program_status,
    update_program,
)
from sorae_payouts_tests.factory import operator_key

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_the_default_program_exists_after_migration(engine):
    with engine.connect() as conn:
        [default] = list_programs(conn)
    assert (default.program_id, default.paying_account_ref, default.status, default.policy) == (
        "default",
        None,
        "active",
        {},
    )


def test_add_update_disable_append_history(engine):
    add_program(
        engine,
        "acme",
        name="Acme",
        paying_account_ref="env:ACME_STRIPE_KEY",
        policy={"minimum_minor": {"usd": 2500}, "holding_days": 7},
        added_by="ops",
        now=NOW,
    )
    update_program(
        engine,
        "acme",
        policy_changes={"minimum_minor": {"usd": 5000}},
        policy_removals=("holding_days",),
        changed_by="ops2",
        now=NOW,
    )
    set_program_status(engine, "acme", active=False, changed_by="ops", now=NOW)
    with engine.connect() as conn:
        acme = get_program(conn, "acme")
        history = program_history(conn, "acme")
    assert acme.policy == {"minimum_minor": {"usd": 5000}} and acme.status == "disabled"
    assert [h["event"] for h in history] == ["added", "updated", "disabled"]
    assert history[1]["change"]["policy"] == [
        {"holding_days": 7, "minimum_minor": {"usd": 2500}},
        {"minimum_minor": {"usd": 5000}},
    ]
    assert history[1]["recorded_by"] == "ops2"


@pytest.mark.parametrize("program_id", ["", "Acme", "a|b", "a,b", "-x", "x" * 49, "acmé"])
def test_program_ids_fit_partition_keys_and_stripe_keys(engine, program_id):
    with pytest.raises(ProgramError, match="program id"):
        add_program(engine, program_id, name="X", added_by="ops", now=NOW)


@pytest.mark.parametrize("ref", ["sk_test_abc123", "env:sk_live_abc", "rk_live_x", "plain-key", "env:", "file:/x"])
def test_a_key_or_an_unknown_reference_is_refused_and_not_stored(engine, ref):
    with pytest.raises(ProgramError) as refused:
        add_program(engine, "acme", name="Acme", paying_account_ref=ref, added_by="ops", now=NOW)
    assert "sk_" not in str(refused.value) and "rk_" not in str(refused.value)  # the value is not echoed
    with engine.connect() as conn:
        assert [p.program_id for p in list_programs(conn)] == ["default"]


def test_database_refuses_a_stored_key_and_history_edits(engine):
    add_program(engine, "acme", name="Acme", added_by="ops", now=NOW)
    refused = [
        "UPDATE program SET paying_account_ref = 'sk_live_123' WHERE program_id = 'acme'",  # CHECK
        "UPDATE program SET program_id = 'acme2' WHERE program_id = 'acme'",
        "DELETE FROM program WHERE program_id = 'acme'",
        "UPDATE program_event SET recorded_by = 'someone else'",
        "DELETE FROM program_event",
    ]
    for statement in refused:
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text(statement))


def test_policy_overrides_are_validated(engine):
    for policy in (
        {"minimum_minor": {"USD": 1}},
        {"minimum_minor": {"usd": 1.5}},
        {"holding_days": -1},
        {"unknown": 1},
        {"first_period": "2026-13"},
    ):
        with pytest.raises(ProgramError):
            add_program(engine, "acme", name="Acme", policy=policy, added_by="ops", now=NOW)


def test_cli_add_list_show_update(engine, ledger_url, monkeypatch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    runner = CliRunner()
    added = runner.invoke(
        build_app(),
        [
            "programs",
            "add",
            "acme",
            "--name",
            "Acme Shoes",
            "--pays",
            "secrets:acme",
            "--minimum",
            "usd=25.00",
            "--minimum",
            "jpy=3000",
            "--dual-approval-over",
            "usd=10000",
            "--by",
            "ops@sorae",
        ],
    )
    assert added.exit_code == 0, added.output
    listed = json.loads(runner.invoke(build_app(), ["programs", "list", "--json"]).stdout)
    assert [(p["program_id"], p["paying_account"]) for p in listed] == [
        ("acme", "secrets:acme"),
        ("default", "platform"),
    ]
    assert listed[0]["policy"] == {
        "minimum_minor": {"jpy": 3000, "usd": 2500},
        "dual_approval_over_minor": {"usd": 1000000},
    }
    updated = runner.invoke(build_app(), ["programs", "update", "acme", "--pays", "platform", "--by", "ops@sorae"])
    assert updated.exit_code == 0, updated.output
    shown = json.loads(runner.invoke(build_app(), ["programs", "show", "acme", "--json"]).stdout)
    assert shown["paying_account"] == "platform"
    assert [h["event"] for h in shown["history"]] == ["added", "updated"]
    bad = runner.invoke(build_app(), ["programs", "add", "beta", "--name", "B", "--pays", "sk_test_secret123"])
    assert bad.exit_code == 1 and "sk_test_secret123" not in bad.output
    bad_amount = runner.invoke(build_app(), ["programs", "add", "beta", "--name", "B", "--minimum", "usd=1.005"])
    assert bad_amount.exit_code == 2


def test_operators_are_registered_per_program(engine, ledger_url, monkeypatch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    monkeypatch.delenv("SORAE_MIGRATION_DATABASE_URL", raising=False)
    add_program(engine, "acme", name="Acme", added_by="ops", now=NOW)
    runner = CliRunner()
    public = operator_key("alice", "acme").public_key
    bootstrap = ["operators", "bootstrap", "--program", "acme", "--operator", f"alice={public}"]
    assert runner.invoke(build_app(), bootstrap).exit_code == 0
    acme = json.loads(runner.invoke(build_app(), ["operators", "list", "--program", "acme", "--json"]).stdout)
    default = json.loads(runner.invoke(build_app(), ["operators", "list", "--json"]).stdout)
    assert [(o["operator_id"], o["key_id"]) for o in acme] == [("alice", operator_key("alice", "acme").key_id)]
    assert default == []
    unknown = runner.invoke(build_app(), ["operators", "bootstrap", "--program", "nope", "--operator", f"bob={public}"])
    assert unknown.exit_code == 1 and "unknown program" in unknown.output
