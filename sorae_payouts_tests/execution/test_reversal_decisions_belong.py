"""Issue 16, defect 6: a reversal decision belongs to an operator of the item's own program, who signs it.

`reversals resolve ITEM --owe-again --by "random stranger"` used to be recorded, for any item id of any
program. Now the decision is signed with SORAE_OPERATOR_KEY (whoever holds the key decides, a typed
name never does), takes `--program`, and refuses an item of another program; the database refuses an
unsigned operator decision and one filed under another program. SQLite and PostgreSQL, sandbox over HTTP.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.aftercare.reversals import ReversalError
from sorae_payouts.cli import reversals_cmd
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts_tests.execution.conftest import API_KEY, make_gateway, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_program,
    decide_reversal,
    items,
    operator_key,
    register_operators,
    use_operator_key,
)

runner = CliRunner()


@pytest.fixture
def reversed_item(engine, sandbox, stripe_client, ledger_url, monkeypatch):
    """The default program's alice was paid 40.00 and Stripe reversed all of it; acme has its own operator."""
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.url)
    seed_batch(engine, stripe_client, {"alice": 4_000})
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    [transfer] = sandbox_transfers(stripe_client)
    stripe_client.v1.transfers.reversals.create(transfer.id)
    refresh_batch(engine, gateway, OCT)
    add_program(engine, "acme")
    register_operators(engine, "acme-ops", program_id="acme")
    return int(items(engine, "payout_2026-10")[("alice", "usd")]["payout_item_id"])


def _resolve(*args):
    return runner.invoke(reversals_cmd.app, ["resolve", *args])


def _decisions(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT decided_by, operator_id, program_id FROM reversal_decision")).all()
    return [tuple(r) for r in rows]


def test_a_stranger_cannot_decide_and_neither_can_another_programs_operator(
    engine, reversed_item, monkeypatch, tmp_path
):
    item = str(reversed_item)
    monkeypatch.delenv("SORAE_OPERATOR_KEY", raising=False)
    issue = _resolve(item, "--owe-again", "--by", "random stranger")  # the issue's command, word for word
    assert issue.exit_code == 1 and "name one with --program" in issue.output
    stranger = _resolve(item, "--owe-again", "--program", "default", "--by", "random stranger")
    assert stranger.exit_code == 1 and "SORAE_OPERATOR_KEY is not set" in stranger.output
    use_operator_key(monkeypatch, tmp_path, "random stranger")  # a key nobody registered
    unknown = _resolve(item, "--owe-again", "--program", "default", "--by", "random stranger")
    assert unknown.exit_code == 1 and "not the current key of an operator of program default" in unknown.output
    use_operator_key(monkeypatch, tmp_path, "acme-ops", program_id="acme")
    elsewhere = _resolve(item, "--owe-again", "--program", "acme")  # acme's operator, default's item
    assert elsewhere.exit_code == 1 and f"item {item} is not an item of program acme" in elsewhere.output
    not_theirs = _resolve(item, "--owe-again", "--program", "default")
    assert not_theirs.exit_code == 1 and "not the current key of an operator of program default" in not_theirs.output
    assert _decisions(engine) == []
    use_operator_key(monkeypatch, tmp_path, "tests")  # the default program's operator
    posing = _resolve(item, "--owe-again", "--program", "default", "--by", "tests-second")
    assert posing.exit_code == 1 and "--by names 'tests-second' but the key" in posing.output
    decided = _resolve(item, "--owe-again", "--program", "default", "--json")
    assert decided.exit_code == 0, decided.output
    assert _decisions(engine) == [("tests", "tests", "default")]


def test_the_database_refuses_unsigned_or_misfiled_decisions(engine, reversed_item):
    insert = (
        "INSERT INTO reversal_decision (program_id, payout_item_id, affiliate_id, currency, amount_minor, decision, "
        "decided_by, decided_at, operator_id, key_id, signature, reversal_request_pk) VALUES (:p, :i, 'alice', "
        "'usd', 1000, 'owe_again', :by, :now, :op, :k, :sig, :rq)"
    )
    signed = {
        "p": "default",
        "i": reversed_item,
        "by": "tests",
        "now": NOW,
        "op": "tests",
        "k": operator_key("tests").key_id,
        "sig": "A" * 88,
        "rq": None,
    }
    for wrong in (
        {"by": "random stranger", "op": None, "k": None, "sig": None},  # today's unsigned decision
        {"sig": None},
        {"by": "random stranger"},  # a name that is not the signing operator
        {"p": "acme", "by": "acme-ops", "op": "acme-ops", "k": operator_key("acme-ops", "acme").key_id},
        {"by": "policy:recover_by_reversal", "op": None, "k": None, "sig": None, "rq": 999},  # no such request
    ):
        with pytest.raises(sa.exc.DBAPIError, match="sorae ledger: a reversal decision is signed"):
            with engine.begin() as conn:
                conn.execute(sa.text(insert), {**signed, **wrong})
    assert _decisions(engine) == []
    with pytest.raises(ReversalError, match="not an item of program acme"):
        decide_reversal(engine, reversed_item, "owe_again", by="acme-ops", program_id="acme")
    decide_reversal(engine, reversed_item, "write_off", reason="fraud", by="tests-second")
    assert _decisions(engine) == [("tests-second", "tests-second", "default")]
