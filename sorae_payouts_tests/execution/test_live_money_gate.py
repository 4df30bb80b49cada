"""One live-money gate (issue 16, defect 4): every request that moves money passes one choke point in the
gateway, which refuses a live key without SORAE_LIVE_PAYOUTS=1. Before, `reversals recover` (and a `batch
execute` whose only work was a recovery reversal) sent `POST /v1/transfers/{id}/reversals` with an `sk_live_`
key and no setting.

The first test enumerates the gateway's own Stripe calls, so a money-moving method added later without the
gate fails here; the others prove the gate against the sandbox over HTTP.
"""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime

import pytest
import stripe

from sorae_payouts.aftercare.recovery import recover_negative_balances
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.stripe_gateway import GatewayConfig, LivePayoutsRefused, StripeGateway, gateway
from sorae_payouts_tests.execution.conftest import BALANCES, make_gateway, sandbox_transfers, seed_batch
from sorae_payouts_tests.factory import NOV, OCT, add_event, approve, build_manifest, finalize_period
from sorae_sandbox import SandboxServer

LIVE_KEY = "sk_live_sorae_tests_0000"
LATER = datetime(2027, 1, 10, tzinfo=UTC)
# Stripe resources whose create (POST) moves money; a gateway call on any of them must be gated.
MONEY_RESOURCES = {"transfers", "reversals", "payouts", "refunds", "topups", "charges"}
# The path each SDK resource posts to (what the HTTP-level gate matches).
RESOURCE_PATHS = {
    "transfers": "/v1/transfers",
    "reversals": "/v1/transfers/tr_x/reversals",
    "payouts": "/v1/payouts",
    "refunds": "/v1/refunds",
    "topups": "/v1/topups",
    "charges": "/v1/charges",
}


def _sdk_calls() -> list[tuple[str, str, str]]:
    """(gateway method, resource, verb) for every `self.client.v1.<resource...>.<verb>(...)` in the gateway."""
    tree = ast.parse(inspect.getsource(gateway))
    found = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "StripeGateway"):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(method):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                    chain, cur = [], node
                    while isinstance(cur, ast.Attribute):
                        chain.append(cur.attr)
                        cur = cur.value
                    chain.reverse()
                    if chain[:2] == ["client", "v1"] and len(chain) >= 4:
                        found.append((method.name, chain[-2], chain[-1]))
    return found


def test_every_money_moving_call_of_the_gateway_is_behind_the_one_gate():
    calls = _sdk_calls()
    assert ("create_transfer", "transfers", "create") in calls and ("reverse_transfer", "reversals", "create") in calls
    creating = [(m, r) for m, r, verb in calls if verb in ("create", "update") and r in MONEY_RESOURCES]
    for method, resource in creating:
        assert gateway.moves_money("post", f"https://api.stripe.com{RESOURCE_PATHS[resource]}"), (
            f"StripeGateway.{method} posts to {resource}, which the live-money gate does not cover"
        )
    for resource, path in RESOURCE_PATHS.items():  # every money resource, used today or not
        assert gateway.moves_money("POST", f"https://api.stripe.com{path}"), resource
    assert not gateway.moves_money("get", "https://api.stripe.com/v1/transfers")
    assert not gateway.moves_money("post", "https://api.stripe.com/v1/accounts")


@pytest.fixture
def live_sandbox(tmp_path):
    server = SandboxServer(state_path=tmp_path / "live.sqlite3", balances=BALANCES, allow_live_keys=True).start()
    yield server
    server.stop()


def _posts(sandbox) -> int:
    return sandbox.admin("GET", "/_sandbox/stats")["v1_requests"]


def test_the_gate_refuses_a_live_reversal_and_transfer_before_the_wire(live_sandbox, monkeypatch):
    monkeypatch.delenv("SORAE_LIVE_PAYOUTS", raising=False)
    live = StripeGateway(GatewayConfig(LIVE_KEY, live_sandbox.url, max_network_retries=0))
    before = _posts(live_sandbox)
    with pytest.raises(LivePayoutsRefused, match="STRIPE_API_KEY is a LIVE key"):
        live.reverse_transfer("tr_anything", 100, "key-1", {})
    with pytest.raises(LivePayoutsRefused, match="LIVE key"):
        live.client.v1.payouts.create(params={"amount": 100, "currency": "usd"})  # even through the raw client
    assert _posts(live_sandbox) == before


def test_reversals_recover_with_a_live_key_sends_nothing_without_the_setting(engine, live_sandbox, monkeypatch):
    """Defect 4: a negative balance under `recover_by_reversal`, a live key, no SORAE_LIVE_PAYOUTS=1."""
    client = stripe.StripeClient("sk_test_sorae_tests", base_addresses={"api": live_sandbox.url})
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE program SET policy = '{\"negative_balance\": \"recover_by_reversal\"}' WHERE program_id = 'default'"
        )
    seed_batch(engine, client, {"alice": 9_000})
    monkeypatch.setenv("SORAE_LIVE_PAYOUTS", "1")  # October is paid with the yes
    execute_batch(engine, make_gateway(live_sandbox), OCT)
    with engine.connect() as conn:
        order = conn.exec_driver_sql("SELECT order_id FROM commission WHERE affiliate_id = 'alice'").scalar_one()
    add_event(engine, order, "cancellation", occurred_at=LATER)
    finalize_period(engine, NOV, now=LATER, holding_days=0)
    build_manifest(engine, NOV, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=LATER)
    approve(engine, NOV, now=LATER)

    monkeypatch.delenv("SORAE_LIVE_PAYOUTS")
    live = StripeGateway(GatewayConfig(LIVE_KEY, live_sandbox.url, max_network_retries=0))
    [transfer] = sandbox_transfers(client)
    with pytest.raises(LivePayoutsRefused, match="SORAE_LIVE_PAYOUTS=1"):
        recover_negative_balances(engine, live, NOV, now=LATER)
    assert client.v1.transfers.retrieve(transfer.id).amount_reversed == 0
    with engine.connect() as conn:  # refused before anything was stored: nothing to resume by mistake
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM transfer_reversal_request").scalar_one() == 0
