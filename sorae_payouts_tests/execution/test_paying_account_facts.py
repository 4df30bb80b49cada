"""Who pays is a fact from Stripe, not a label (issue 16, defects 3 and 9), on SQLite and PostgreSQL,
against the sandbox over HTTP through the front doors (use cases and CLI).

- A program whose `env:` key is the platform's own key shares the platform balance: unfunded, it is
  refused, it never spends the other programs' charges (defect 3, first half).
- Disabling the other programs does not make their recorded funding this program's (defect 3, second half).
- A key that resolves to another account than the one recorded for the program is refused by every command
  with one line naming both accounts (defect 9).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import build_app
from sorae_payouts.core.periods import ProgramMonth
from sorae_payouts.execution.pay_batch import ExecutionSettings, FundingShortfall
from sorae_payouts.registry.account_facts import PayingAccountError
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.registry.programs import set_program_status
from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway
from sorae_payouts.use_cases import aftercare, payouts
from sorae_payouts_tests.execution.conftest import (
    API_KEY,
    BALANCES,
    add_program,
    attempts_of,
    charge,
    fund,
    make_gateway,
    sandbox_transfers,
    seed_batch,
)
from sorae_payouts_tests.factory import NOW, OCT

THIRD_KEY = "sk_test_sorae_third_platform"


def _gateways(engine, sandbox) -> ProgramGateways:
    return ProgramGateways(make_gateway(sandbox).config, engine)


def _pay(engine, sandbox, program_id: str):
    return payouts.pay_program_month(
        engine, _gateways(engine, sandbox), OCT, program_id, settings=ExecutionSettings(), now=NOW
    )


def test_a_reference_to_the_platform_key_is_the_platform_account_and_needs_its_own_funding(
    engine, sandbox, stripe_client, monkeypatch
):
    """Defect 3: `rogue` says `env:ROGUE_KEY`, whose value is the platform's key. Before, it counted as "its own
    account", unfunded, and paid 500.00 out of acme's charges."""
    monkeypatch.setenv("ROGUE_KEY", API_KEY)
    add_program(engine, "acme")
    add_program(engine, "rogue", "env:ROGUE_KEY")
    gateway = make_gateway(sandbox)
    seed_batch(engine, stripe_client, {"alice": 2_000}, program_id="acme")
    fund(engine, gateway, "acme", charge_id=charge(stripe_client, 60_000))
    seed_batch(engine, stripe_client, {"mallory": 50_000}, program_id="rogue")

    with pytest.raises(FundingShortfall, match=r"program rogue .*need 500.00 usd, available 0.00 usd"):
        _pay(engine, sandbox, "rogue")
    assert sandbox_transfers(stripe_client, "payout_rogue_2026-10") == [] and attempts_of(engine, "rogue") == []
    with engine.connect() as conn:
        recorded = dict(conn.execute(sa.text("SELECT program_id, paying_account_id FROM program")).all())
    assert recorded["rogue"] == gateway.paying_account()  # the fact: rogue's key is the platform's

    assert _pay(engine, sandbox, "acme").report.outcome.status == "completed"  # acme's own money pays acme


def test_disabling_the_other_programs_does_not_hand_their_funding_over(engine, sandbox, stripe_client):
    """Defect 3: acme funded 100.00 with 600.00 to pay; bolt's 1,000.00 of charges sit in the same balance.
    Before, disabling bolt made acme "alone" and it paid 600.00 from the balance."""
    add_program(engine, "acme")
    add_program(engine, "bolt")
    gateway = make_gateway(sandbox)
    seed_batch(engine, stripe_client, {"alice": 60_000}, program_id="acme")
    fund(engine, gateway, "acme", charge_id=charge(stripe_client, 10_000))
    fund(engine, gateway, "bolt", charge_id=charge(stripe_client, 100_000))
    for other in ("bolt", "default"):  # acme is the only active program left on the platform account
        set_program_status(engine, other, active=False, changed_by="ops", now=NOW)

    with pytest.raises(FundingShortfall, match=r"need 600.00 usd, available 100.00 usd"):
        _pay(engine, sandbox, "acme")
    assert sandbox_transfers(stripe_client, "payout_acme_2026-10") == []


def test_a_key_of_another_account_is_refused_by_every_command_naming_both_accounts(
    engine, ledger_url, sandbox, stripe_client, second_platform, monkeypatch
):
    """Defect 9: cobalt's key is swapped for a key of another Stripe account. Before, reconcile reported every
    transfer `missing_in_stripe` and refresh said "0 changes"; now every command refuses, naming both."""
    add_program(engine, "cobalt", "env:ACME_STRIPE_KEY")
    seed_batch(engine, second_platform, {"alice": 5_000, "bob": 6_000}, program_id="cobalt")
    first = _pay(engine, sandbox, "cobalt")
    assert first.report.outcome.status == "completed"
    cobalt_account = first.gateway.paying_account()

    sandbox.add_platform(THIRD_KEY, BALANCES)
    monkeypatch.setenv("ACME_STRIPE_KEY", THIRD_KEY)  # the wrong key behind the same reference
    other_account = StripeGateway(GatewayConfig(THIRD_KEY, sandbox.url)).paying_account()
    both = (
        rf"cobalt pays from Stripe account {cobalt_account}, but its key \(env:ACME_STRIPE_KEY\) "
        rf"belongs to {other_account}"
    )

    with pytest.raises(PayingAccountError, match=both):
        _pay(engine, sandbox, "cobalt")
    with pytest.raises(PayingAccountError, match=both):
        aftercare.reconcile(engine, _gateways(engine, sandbox), ProgramMonth(OCT, "cobalt"))
    with pytest.raises(PayingAccountError, match=both):
        aftercare.recover(engine, _gateways(engine, sandbox), ProgramMonth(OCT, "cobalt"), now=NOW)
    with pytest.raises(PayingAccountError, match=both):
        payouts.plan_retry_of(engine, _gateways(engine, sandbox), OCT, "cobalt")
    run = aftercare.refresh_programs(engine, _gateways(engine, sandbox), program_ids=["cobalt"])
    assert not run.reports and len(run.refused) == 1
    assert all(f"belongs to {other_account}" in why for why in run.refused.values())

    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.url)
    cli = CliRunner()
    for args in (
        ["reconcile", "2026-10", "--program", "cobalt"],
        ["refresh", "2026-10", "--program", "cobalt"],
        ["retry", "2026-10", "--program", "cobalt"],
        ["reversals", "recover", "2026-10", "--program", "cobalt"],
        ["programs", "fund", "cobalt", "--charge", "ch_whatever", "--by", "finance"],
    ):
        result = cli.invoke(build_app(), args)
        assert result.exit_code == 1, (args, result.output)
        assert cobalt_account in result.output and other_account in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert len(sandbox_transfers(second_platform, "payout_cobalt_2026-10")) == 2  # nothing more was sent


def test_the_recorded_account_changes_only_with_the_reference(engine, sandbox, stripe_client, monkeypatch):
    """The database keeps the fact: a program's recorded account cannot be swapped under the same reference
    (an insider's UPDATE), and the platform account is recorded once."""
    add_program(engine, "acme")
    seed_batch(engine, stripe_client, {"alice": 5_000}, program_id="acme")
    fund(engine, make_gateway(sandbox), "acme", charge_id=charge(stripe_client, 5_000))
    assert _pay(engine, sandbox, "acme").report.outcome.status == "completed"
    with pytest.raises(sa.exc.DBAPIError, match="recorded paying account of a program changes only"):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE program SET paying_account_id = 'acct_other' WHERE program_id = 'acme'"))
    for statement in (
        "UPDATE platform_account SET account_id = 'acct_other'",
        "DELETE FROM platform_account",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="the platform account is recorded once"):
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
    with engine.begin() as conn:  # re-pointing the reference (an operator's `programs update --pays`) re-opens it
        conn.execute(
            sa.text(
                "UPDATE program SET paying_account_ref = 'env:X', paying_account_id = NULL WHERE program_id = 'acme'"
            )
        )
        assert conn.execute(sa.text("SELECT paying_account_id FROM program WHERE program_id = 'acme'")).scalar() is None
