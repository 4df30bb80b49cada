"""Live money needs an explicit yes (issue 7, point 6): one rule in the gateway, every sending path."""

from __future__ import annotations

import dagster as dg
import pytest
import typer
from typer.testing import CliRunner

from sorae_payouts.cli import demo_cmd, operations_cmd
from sorae_payouts.definitions import defs
from sorae_payouts.defs.lib.resources import LedgerResource, PayoutSettings, StripeResource
from sorae_payouts.execution.pay_batch import ExecutionRefused, execute_batch
from sorae_payouts.stripe_gateway import GatewayConfig, LivePayoutsRefused, StripeGateway, TransferRequest
from sorae_payouts_tests.execution.conftest import BALANCES, assert_paid_exactly_once, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import OCT
from sorae_sandbox import SandboxServer

LIVE_KEY = "sk_live_sorae_tests_0000"
runner = CliRunner()


@pytest.fixture
def live_sandbox(tmp_path):
    server = SandboxServer(state_path=tmp_path / "live.sqlite3", balances=BALANCES, allow_live_keys=True).start()
    yield server
    server.stop()


def _live_gateway(sandbox) -> StripeGateway:
    return StripeGateway(GatewayConfig(LIVE_KEY, sandbox.url, max_network_retries=0, rate_limit_per_second=500))


def _v1_requests(sandbox) -> int:
    return sandbox.admin("GET", "/_sandbox/stats")["v1_requests"]


def test_live_key_without_the_setting_refuses_before_any_request(engine, live_sandbox, stripe_client, monkeypatch):
    monkeypatch.delenv("SORAE_LIVE_PAYOUTS", raising=False)
    seed_batch(engine, _sdk(live_sandbox), {"alice": 5_000})
    before = _v1_requests(live_sandbox)
    with pytest.raises(ExecutionRefused, match="SORAE_LIVE_PAYOUTS=1"):
        execute_batch(engine, _live_gateway(live_sandbox), OCT)
    assert _v1_requests(live_sandbox) == before
    with pytest.raises(LivePayoutsRefused):  # the gateway itself never sends an unauthorized live transfer
        _live_gateway(live_sandbox).create_transfer(TransferRequest(100, "usd", "acct_x", "g", "d", {}), "k")
    assert sandbox_transfers(_sdk(live_sandbox)) == []


def test_live_key_with_the_setting_announces_account_batch_and_totals_then_pays(engine, live_sandbox, monkeypatch):
    monkeypatch.setenv("SORAE_LIVE_PAYOUTS", "1")
    client = _sdk(live_sandbox)
    seed_batch(engine, client, {"alice": 5_000, "bob": 7_000})
    said = []
    report = execute_batch(engine, _live_gateway(live_sandbox), OCT, announce=said.append)
    platform = client.v1.accounts.retrieve_current().id
    assert said == [
        f"LIVE PAYOUTS (SORAE_LIVE_PAYOUTS=1): Stripe account {platform} pays batch payout_2026-10: "
        "2 transfers / 120.00 usd"
    ]
    assert report.outcome.count("posted") == 2
    assert_paid_exactly_once(engine, client)


def _sdk(sandbox):
    import stripe

    return stripe.StripeClient("sk_test_sorae_tests", base_addresses={"api": sandbox.url}, max_network_retries=0)


def test_cli_retry_and_refresh_with_a_live_key_refuse_without_the_setting(
    engine, ledger_url, live_sandbox, monkeypatch
):
    seed_batch(engine, _sdk(live_sandbox), {"alice": 5_000})
    for name, value in {
        "SORAE_DATABASE_URL": ledger_url,
        "STRIPE_API_KEY": LIVE_KEY,
        "STRIPE_API_BASE": live_sandbox.url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SORAE_LIVE_PAYOUTS", raising=False)
    # An unknown outcome makes refresh a sending path: the attempt is claimed, nothing was sent.
    from sorae_payouts.execution import attempts as ledger
    from sorae_payouts.execution.identity import PaymentIdentity
    from sorae_payouts.execution.pay_batch import utcnow

    with engine.connect() as conn:
        [item] = ledger.work_items(conn, "payout_2026-10")
    ledger.claim(
        engine,
        item,
        paying_account="acct_earlier",
        identity=PaymentIdentity("default", "2026-10", "alice", "usd"),
        now=utcnow(),
    )
    app = typer.Typer()
    operations_cmd.register(app)
    result = runner.invoke(app, ["refresh", "2026-10"])
    assert result.exit_code == 1 and "SORAE_LIVE_PAYOUTS=1" in result.output
    assert sandbox_transfers(_sdk(live_sandbox)) == []


def test_dagster_execution_with_a_live_key_fails_without_the_setting(engine, ledger_url, live_sandbox, monkeypatch):
    monkeypatch.delenv("SORAE_LIVE_PAYOUTS", raising=False)
    seed_batch(engine, _sdk(live_sandbox), {"alice": 5_000})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("program", ["default"])
        result = defs.resolve_job_def("payout_execution_job").execute_in_process(
            partition_key="2026-10-01|default",
            raise_on_error=False,
            instance=instance,
            resources={
                "ledger": LedgerResource(database_url=ledger_url),
                "payout_settings": PayoutSettings(),
                "stripe": StripeResource(api_key=LIVE_KEY, api_base=live_sandbox.url),
            },
        )
        assert not result.success
        [failure] = result.get_step_failure_events()
        assert "SORAE_LIVE_PAYOUTS=1" in failure.event_specific_data.error.message
        assert LIVE_KEY not in "".join(str(e) for e in instance.all_logs(result.run_id))
    assert sandbox_transfers(_sdk(live_sandbox)) == []


@pytest.mark.parametrize(
    "env",
    [
        {"STRIPE_API_KEY": LIVE_KEY, "STRIPE_API_BASE": "http://127.0.0.1:9"},
        {"STRIPE_API_KEY": "rk_live_restricted", "SORAE_LIVE_PAYOUTS": "1"},
        {"STRIPE_API_KEY": "sk_test_real_stripe"},  # real Stripe: no STRIPE_API_BASE
    ],
)
def test_demo_refuses_live_keys_and_real_stripe_outright(env, tmp_path, monkeypatch):
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    monkeypatch.setenv("SORAE_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = typer.Typer()
    app.command("demo")(demo_cmd.demo)
    app.command("noop")(lambda: None)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1 and "demo refused" in result.output
    assert not any(tmp_path.iterdir())  # nothing was created


def test_retry_with_a_live_key_refuses_before_any_item_moves(engine, live_sandbox, monkeypatch):
    from sorae_payouts.aftercare.retry import execute_retry, plan_retry
    from sorae_payouts.execution import attempts as ledger
    from sorae_payouts.execution.identity import PaymentIdentity
    from sorae_payouts.execution.pay_batch import utcnow
    from sorae_payouts.stripe_gateway import Disposition, TransferOutcome
    from sorae_payouts.stripe_gateway.error_codes import ClassifiedError

    monkeypatch.delenv("SORAE_LIVE_PAYOUTS", raising=False)
    seed_batch(engine, _sdk(live_sandbox), {"alice": 5_000})
    with engine.connect() as conn:
        [item] = ledger.work_items(conn, "payout_2026-10")
    attempt = ledger.claim(
        engine,
        item,
        paying_account="acct_p",
        identity=PaymentIdentity("default", "2026-10", "alice", "usd"),
        now=utcnow(),
    )
    error = ClassifiedError(Disposition.FAILED, "account_invalid", "closed", "req_1", 400, None)
    ledger.record(engine, attempt, TransferOutcome(Disposition.FAILED, error=error), now=utcnow())
    with engine.connect() as conn:
        plan = plan_retry(conn, OCT)
    assert len(plan.retry) == 1
    with pytest.raises(ExecutionRefused, match="SORAE_LIVE_PAYOUTS=1"):
        execute_retry(engine, _live_gateway(live_sandbox), plan, now=utcnow())
    with engine.connect() as conn:
        assert ledger.work_items(conn, "payout_2026-10") == []  # still failed, not moved back to pending
    assert sandbox_transfers(_sdk(live_sandbox)) == []


def test_a_program_live_key_follows_the_same_rule_and_is_named_by_its_reference(engine, live_sandbox, monkeypatch):
    from sorae_payouts.registry.paying_accounts import program_gateway
    from sorae_payouts.registry.programs import get_program
    from sorae_payouts_tests.execution.conftest import add_program

    program_key = "sk_live_acme_merchant_9999"
    monkeypatch.setenv("ACME_STRIPE_KEY", program_key)
    monkeypatch.delenv("SORAE_LIVE_PAYOUTS", raising=False)
    add_program(engine, "acme", "env:ACME_STRIPE_KEY")
    client = _sdk(live_sandbox)
    seed_batch(engine, client, {"alice": 5_000}, program_id="acme")
    with engine.connect() as conn:
        gateway = program_gateway(
            GatewayConfig("sk_test_platform", live_sandbox.url, max_network_retries=0), get_program(conn, "acme")
        )
    before = _v1_requests(live_sandbox)
    with pytest.raises(ExecutionRefused, match="env:ACME_STRIPE_KEY is a LIVE key.*SORAE_LIVE_PAYOUTS=1") as refused:
        execute_batch(engine, gateway, OCT, program_id="acme")
    assert program_key not in str(refused.value) and _v1_requests(live_sandbox) == before
    monkeypatch.setenv("SORAE_LIVE_PAYOUTS", "1")
    said = []
    report = execute_batch(engine, gateway, OCT, program_id="acme", announce=said.append)
    assert report.outcome.count("posted") == 1 and "pays batch payout_acme_2026-10: 1 transfers / 50.00 usd" in said[0]
    assert len(sandbox_transfers(client, "payout_acme_2026-10")) == 1
