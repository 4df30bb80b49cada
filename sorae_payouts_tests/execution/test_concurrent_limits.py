"""Every "no more than" rule with two transactions at once, on PostgreSQL (issue 16, defect 2 and the rule
behind it): one real connection holds its transaction open while another tries, through the engine's own
code and as an insider writing rows directly. PostgreSQL only: SQLite serializes writers (BEGIN IMMEDIATE,
one writer at a time), and the sequential rules are tested on both databases elsewhere.

- decisions about a reversal <= the reversed amount;
- what a charge pays <= the charge; what a program spends <= its funding;
- a recovery <= the negative balance it recovers;
- an owed-again amount is carried once.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.aftercare.reversals import ReversalError
from sorae_payouts.execution import attempts
from sorae_payouts.execution.identity import PaymentIdentity
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.registry.funding import source_choice
from sorae_payouts_tests.execution.conftest import (
    add_program,
    charge,
    fund,
    make_gateway,
    sandbox_transfers,
    seed_batch,
    topup,
)
from sorae_payouts_tests.factory import (
    NOV,
    NOW,
    OCT,
    add_event,
    build_manifest,
    decide_reversal,
    finalize_period,
    items,
    operator_key,
    register_operators,
)

LATER = NOW.replace(year=2027, month=1, day=10)

HOLD = 1.5  # seconds the first transaction stays open while the second one tries


@pytest.fixture(params=["postgres"])
def ledger_url(request, tmp_path) -> str:
    """This module's ledgers are PostgreSQL ones (see the module docstring)."""
    from sorae_payouts_tests.conftest import make_ledger_url

    return make_ledger_url(request.param, tmp_path, request)


def _reversed_item(engine, sandbox, stripe_client, amount=4_000) -> int:
    """Alice's October item, paid, then `amount` of it reversed at Stripe and seen by refresh."""
    seed_batch(engine, stripe_client, {"alice": 9_000})
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, OCT)
    [transfer] = sandbox_transfers(stripe_client)
    stripe_client.v1.transfers.reversals.create(transfer.id, params={"amount": amount})
    refresh_batch(engine, gateway, OCT)
    return int(items(engine, "payout_2026-10")[("alice", "usd")]["payout_item_id"])


def _second_try_while_first_is_open(engine, first, second) -> tuple[object, BaseException | None]:
    """Run `first(conn)` in a transaction held open for HOLD seconds; meanwhile `second()` runs in another
    thread on its own connection. Returns what `second` returned (or None) and what it raised."""
    outcome: dict = {}
    started = threading.Event()

    def try_second():
        started.wait()
        try:
            outcome["value"] = second()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=try_second)
    thread.start()
    with engine.begin() as conn:
        first(conn)
        started.set()
        time.sleep(HOLD)  # the second writer is now waiting on this transaction (PostgreSQL) or its lock
    thread.join(timeout=60)
    assert not thread.is_alive()
    return outcome.get("value"), outcome.get("error")


def _decided(engine, item_id) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT COALESCE(SUM(amount_minor), 0) FROM reversal_decision WHERE payout_item_id = :i"),
                {"i": item_id},
            ).scalar_one()
        )


# An insider's row, in the shape the database accepts (an operator with a registered key, a signature of the
# right length); whether the signature verifies is execution's business, the amount limit the database's.
_DECISION = (
    "INSERT INTO reversal_decision (program_id, payout_item_id, affiliate_id, currency, amount_minor, decision, "
    "decided_by, reason, decided_at, operator_id, key_id, signature) VALUES ('default', :i, 'alice', 'usd', 4000, "
    "'owe_again', :by, NULL, :now, :by, :k, :sig)"
)


def _decision_row(engine, item_id: int, by: str) -> dict:
    register_operators(engine, "tests", "tests-second")
    return {"i": item_id, "by": by, "now": NOW, "k": operator_key(by).key_id, "sig": "A" * 88}


def test_two_decisions_of_one_reversal_at_once_count_once(engine, sandbox, stripe_client):
    """Defect 2: two `reversals resolve` of one 40.00 reversal at the same moment. Before: 80.00 decided (the
    insert trigger's sum saw only committed rows), and November paid 40.00 too much."""
    item_id = _reversed_item(engine, sandbox, stripe_client)

    row = _decision_row(engine, item_id, "tests")

    def first(conn):
        conn.execute(sa.text(_DECISION), row)

    def second():
        return decide_reversal(engine, item_id, "owe_again", by="tests-second", now=NOW)

    value, error = _second_try_while_first_is_open(engine, first, second)
    assert value is None and isinstance(error, ReversalError), (value, error)
    assert "nothing pending" in str(error)
    assert _decided(engine, item_id) == 4_000


def test_an_insider_writing_two_decisions_at_once_is_refused_by_the_database(engine, sandbox, stripe_client):
    item_id = _reversed_item(engine, sandbox, stripe_client)

    one, two = _decision_row(engine, item_id, "tests"), _decision_row(engine, item_id, "tests-second")

    def first(conn):
        conn.execute(sa.text(_DECISION), one)

    def second():
        with engine.begin() as conn:
            conn.execute(sa.text(_DECISION), two)

    _, error = _second_try_while_first_is_open(engine, first, second)
    assert isinstance(error, sa.exc.DBAPIError) and "cannot exceed the reversed amount" in str(error)
    assert _decided(engine, item_id) == 4_000


def _work(engine, batch_id: str) -> dict[str, attempts.WorkItem]:
    with engine.connect() as conn:
        return {i.affiliate_id: i for i in attempts.work_items(conn, batch_id)}


def _claim_row(engine, affiliate: str, program_id: str, source: str | None) -> dict:
    item = _work(engine, f"payout_{program_id}_2026-10")[affiliate]
    return {
        "i": item.payout_item_id,
        "p": program_id,
        "k": f"test:{program_id}:{affiliate}",
        "a": item.amount_minor,
        "d": item.destination,
        "src": source,
        "now": NOW,
    }


_ATTEMPT = (
    "INSERT INTO transfer_attempt (payout_item_id, program_id, attempt_number, idempotency_key, state, amount_minor, "
    "currency, destination, source_transaction, created_at, updated_at) "
    "VALUES (:i, :p, 1, :k, 'processing', :a, 'usd', :d, :src, :now, :now)"
)


def test_two_attempts_drawing_on_one_charge_at_once_never_overspend_it(engine, sandbox, stripe_client):
    add_program(engine, "acme")
    add_program(engine, "bolt")
    gateway = make_gateway(sandbox)
    seed_batch(engine, stripe_client, {"alice": 6_000, "bob": 6_000}, program_id="acme")
    charge_id = charge(stripe_client, 10_000)
    fund(engine, gateway, "acme", charge_id=charge_id)
    alice, bob = _claim_row(engine, "alice", "acme", charge_id), _claim_row(engine, "bob", "acme", charge_id)

    def first(conn):
        conn.execute(sa.text(_ATTEMPT), alice)

    def second():
        with engine.begin() as conn:
            conn.execute(sa.text(_ATTEMPT), bob)

    _, error = _second_try_while_first_is_open(engine, first, second)
    assert isinstance(error, sa.exc.DBAPIError) and "more from a charge than the charge" in str(error)


def test_two_claims_on_a_programs_top_up_funding_at_once_never_spend_more_than_it(engine, sandbox, stripe_client):
    """The claim's own path: the second claim waits on the program's funding rows, then sees the first
    attempt and holds its item instead of spending money the program does not have."""
    add_program(engine, "acme")
    add_program(engine, "bolt")
    gateway = make_gateway(sandbox)
    seed_batch(engine, stripe_client, {"alice": 6_000, "bob": 6_000}, program_id="acme")
    fund(engine, gateway, "acme", topup_id=topup(stripe_client, 10_000))
    account = gateway.paying_account()
    work = _work(engine, "payout_acme_2026-10")

    def chooser(conn, item):
        return source_choice(
            conn, program_id="acme", paying_account=account, currency="usd", amount_minor=item.amount_minor, strict=True
        )

    def claim(item):
        identity = PaymentIdentity("acme", "2026-10", item.affiliate_id, "usd")
        return attempts.claim(engine, item, paying_account=account, identity=identity, now=NOW, source=chooser)

    def first(conn):  # alice's claim, inside its transaction: the funding rows are taken, the attempt written
        assert chooser(conn, work["alice"]) == (None, None)
        conn.execute(sa.text(_ATTEMPT), _claim_row(engine, "alice", "acme", None))

    value, error = _second_try_while_first_is_open(engine, first, lambda: claim(work["bob"]))
    assert error is None and isinstance(value, attempts.Held), value
    assert "insufficient_program_funds" in value.reason


def test_two_recoveries_of_one_debt_at_once_never_reverse_more_than_it(engine, sandbox, stripe_client):
    """An insider (or a second recovery run) asking Stripe to reverse a debt twice: the database refuses the
    request that would exceed the negative balance, whichever commits second."""
    seed_batch(engine, stripe_client, {"alice": 9_000})
    execute_batch(engine, make_gateway(sandbox), OCT)
    [transfer] = sandbox_transfers(stripe_client)
    alice = items(engine, "payout_2026-10")[("alice", "usd")]
    # November: alice's October order is cancelled: a clawback, and she owes 90.00 back (a negative item).
    with engine.connect() as conn:
        order = conn.execute(sa.text("SELECT order_id FROM commission WHERE affiliate_id = 'alice'")).scalar_one()
    add_event(engine, order, "cancellation", occurred_at=LATER)
    finalize_period(engine, NOV, now=LATER, holding_days=0)
    build_manifest(engine, NOV, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=LATER)
    assert items(engine, "payout_2026-11")[("alice", "usd")]["amount_minor"] == -9_000
    request = (
        "INSERT INTO transfer_reversal_request (program_id, purpose, period, affiliate_id, currency, payout_item_id, "
        "stripe_transfer_id, sequence, amount_minor, idempotency_key, state, created_at, updated_at) VALUES "
        "('default', 'negative_balance_recovery', '2026-11-01', 'alice', 'usd', :i, :t, :s, 9000, :k, 'processing', "
        ":n, :n)"
    )
    row = {"i": alice["payout_item_id"], "t": transfer.id, "n": NOW}

    def first(conn):
        conn.execute(sa.text(request), {**row, "s": 1, "k": "recover-1"})

    def second():
        with engine.begin() as conn:
            conn.execute(sa.text(request), {**row, "s": 2, "k": "recover-2"})

    _, error = _second_try_while_first_is_open(engine, first, second)
    assert isinstance(error, sa.exc.DBAPIError) and "more than the negative balance" in str(error)


def test_an_owed_again_amount_is_carried_once_even_by_two_builds_at_once(engine, sandbox, stripe_client):
    item_id = _reversed_item(engine, sandbox, stripe_client)
    decision = decide_reversal(engine, item_id, "owe_again", now=NOW)
    finalize_period(engine, NOV, now=LATER, holding_days=0)
    build_manifest(engine, NOV, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=LATER)  # carries it once
    with engine.begin() as conn:  # the build's carry is undone here so the two inserts below race for it
        conn.execute(sa.text("DELETE FROM owed_again_carry"))
    carry = (
        "INSERT INTO owed_again_carry (decision_pk, batch_id, affiliate_id, currency, amount_minor) "
        "VALUES (:d, :b, 'alice', 'usd', 4000)"
    )

    def first(conn):
        conn.execute(sa.text(carry), {"d": decision.decision_pk, "b": "payout_2026-11"})

    def second():
        with engine.begin() as conn:
            conn.execute(sa.text(carry), {"d": decision.decision_pk, "b": "payout_2026-11"})

    _, error = _second_try_while_first_is_open(engine, first, second)
    assert isinstance(error, sa.exc.IntegrityError), error
