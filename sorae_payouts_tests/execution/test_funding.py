"""The funding ledger of programs on a shared platform account, on SQLite and PostgreSQL: recorded from
Stripe (sandbox over HTTP), available funding, and the database guard on charges."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch, utcnow
from sorae_payouts.registry.funding import FundingError, available_funding, list_funding, record_funding
from sorae_payouts.registry.paying_accounts import PayingAccountError
from sorae_payouts_tests.execution.conftest import (
    add_program,
    charge,
    fund,
    make_gateway,
    program_items,
    seed_batch,
    topup,
)
from sorae_payouts_tests.factory import NOW, OCT


def test_a_charge_is_recorded_as_stripe_knows_it_once_and_for_one_program(engine, sandbox, stripe_client):
    add_program(engine, "acme")
    add_program(engine, "bolt")
    gateway = make_gateway(sandbox)
    charge_id = charge(stripe_client, 12_345, "eur")
    recorded = fund(engine, gateway, "acme", charge_id=charge_id)
    funding = recorded.funding
    assert recorded.created and (funding.kind, funding.currency, funding.amount_minor) == ("charge", "eur", 12_345)
    assert funding.paying_account == gateway.paying_account() and funding.recorded_by == "finance"
    again = fund(engine, gateway, "acme", charge_id=charge_id)  # the same record again: nothing new
    assert not again.created and again.funding == funding
    with pytest.raises(FundingError, match=f"charge {charge_id} already funds program acme"):
        fund(engine, gateway, "bolt", charge_id=charge_id)
    with pytest.raises(FundingError, match="already funds program acme"):  # nor as a top-up of acme
        fund(engine, gateway, "acme", topup_id=charge_id)
    with engine.connect() as conn:
        assert [f.stripe_id for f in list_funding(conn, "acme")] == [charge_id]
        assert list_funding(conn, "bolt") == []
        assert available_funding(conn, "acme") == {"eur": 12_345}


def test_a_top_up_is_recorded_and_unknown_objects_are_refused(engine, sandbox, stripe_client):
    add_program(engine, "acme")
    gateway = make_gateway(sandbox)
    topup_id = topup(stripe_client, 50_000)
    assert fund(engine, gateway, "acme", topup_id=topup_id).funding.kind == "topup"
    with pytest.raises(
        FundingError, match="charge ch_doesnotexist does not exist on the paying account of program acme"
    ):
        fund(engine, gateway, "acme", charge_id="ch_doesnotexist")
    with pytest.raises(FundingError, match="exactly one"):
        record_funding(engine, gateway, "acme", charge_id="ch_1", topup_id=topup_id, recorded_by="x", now=NOW)
    with pytest.raises(FundingError, match="does not exist"):  # a top-up id is not a charge
        fund(engine, gateway, "acme", charge_id=topup(stripe_client, 1_000))
    with engine.connect() as conn:
        assert available_funding(conn, "acme") == {"usd": 50_000}


def test_a_charge_of_another_platform_account_is_not_found(engine, sandbox, stripe_client, second_platform):
    add_program(engine, "acme", "env:ACME_STRIPE_KEY")
    elsewhere = charge(stripe_client, 10_000)  # on Sorae's platform account, not acme's
    with pytest.raises(PayingAccountError, match="holds another key"):  # the platform's gateway is not acme's
        fund(engine, make_gateway(sandbox), "acme", charge_id=elsewhere)
    from sorae_payouts.registry.paying_accounts import program_gateway
    from sorae_payouts.registry.programs import get_program

    with engine.connect() as conn:
        acme = get_program(conn, "acme")
    acme_gateway = program_gateway(make_gateway(sandbox).config, acme)
    with pytest.raises(FundingError, match=f"charge {elsewhere} does not exist"):
        fund(engine, acme_gateway, "acme", charge_id=elsewhere)
    own = charge(second_platform, 7_000)
    assert fund(engine, acme_gateway, "acme", charge_id=own).funding.paying_account == acme_gateway.paying_account()


def test_available_funding_counts_live_attempts_since_the_funding_began(engine, sandbox, stripe_client):
    """October is paid while the default program is alone on the platform account (from the balance);
    once a second program shares it, the default program spends only its funding, which October's
    payments never drew on."""
    gateway = make_gateway(sandbox)
    seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 7_000})
    execute_batch(engine, gateway, OCT)
    add_program(engine, "acme")
    fund(engine, gateway, "default", topup_id=topup(stripe_client, 20_000), now=utcnow())
    with engine.connect() as conn:
        assert available_funding(conn, "default") == {"usd": 20_000}
        assert available_funding(conn, "acme") == {}


def test_the_database_refuses_an_attempt_that_would_overspend_a_charge(engine, sandbox, stripe_client):
    add_program(engine, "acme")
    add_program(engine, "bolt")
    gateway = make_gateway(sandbox)
    seed_batch(engine, stripe_client, {"alice": 6_000, "bob": 5_000}, program_id="acme")
    seed_batch(engine, stripe_client, {"carol": 1_000}, program_id="bolt")
    acme_charge = charge(stripe_client, 10_000)
    fund(engine, gateway, "acme", charge_id=acme_charge)
    fund(engine, gateway, "acme", topup_id=topup(stripe_client, 1_000))  # 110.00 in all: pre-flight passes
    fund(engine, gateway, "bolt", topup_id=topup(stripe_client, 1_000))
    # alice's 60.00 draws on the charge; bob's 50.00 fits neither what is left of it nor the top-up: held
    execute_batch(engine, gateway, OCT, program_id="acme", settings=ExecutionSettings(workers=1))
    assert program_items(engine, "acme")["bob"][1].startswith("insufficient_program_funds")
    with engine.connect() as conn:
        items = dict(conn.execute(sa.text("SELECT affiliate_id, payout_item_id FROM payout_item")).all())

    def hand_made(item: str, program: str, amount: int, key: str) -> None:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO transfer_attempt (payout_item_id, program_id, attempt_number, idempotency_key, state, "
                    "amount_minor, currency, destination, source_transaction, created_at, updated_at) VALUES "
                    "(:i, :p, 1, :k, 'processing', :a, 'usd', 'acct_x', :s, :now, :now)"
                ),
                {"i": items[item], "p": program, "a": amount, "k": key, "s": acme_charge, "now": NOW},
            )

    with pytest.raises(sa.exc.DBAPIError, match="may not take more from a charge"):
        hand_made("bob", "acme", 5_000, "by-hand-1")  # 60.00 + 50.00 > 100.00
    with pytest.raises(sa.exc.DBAPIError, match="charge of another program"):
        hand_made("carol", "bolt", 1_000, "by-hand-2")  # bolt may not draw on acme's charge
    hand_made("bob", "acme", 4_000, "by-hand-3")  # what is left of it: accepted
