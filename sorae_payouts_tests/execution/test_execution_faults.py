"""Crashes, dropped connections, stale keys, concurrent runs and 429 storms never pay an item twice
nor lose one. Every test ends with the same check: per item at most one transfer in the sandbox, and
posted ledger amounts equal to the sandbox's transfer amounts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import sqlalchemy as sa

from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch
from sorae_payouts_tests.execution.conftest import (
    assert_paid_exactly_once,
    crash_after_stripe_call,
    item_states,
    later,
    make_gateway,
    sandbox_transfers,
    seed_batch,
)
from sorae_payouts_tests.factory import OCT

TWELVE = {f"aff{i:02d}": 1_000 + i for i in range(12)}


def _processing(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT COUNT(*) FROM transfer_attempt WHERE state = 'processing'")).scalar_one()


def test_drop_after_commit_then_rerun_pays_each_item_exactly_once(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {f"aff{i:02d}": 1_000 + i for i in range(20)})
    sandbox.admin(
        "POST",
        "/_sandbox/faults",
        {"mode": "drop_after_commit", "probability": 0.3, "seed": 11, "path_prefix": "/v1/transfers"},
    )
    # No SDK retries: every dropped answer is an unknown outcome, resolved by the lookup by transfer
    # group and metadata, never by a new key.
    first = execute_batch(engine, make_gateway(sandbox, retries=0), OCT)
    dropped = sandbox.admin("GET", "/_sandbox/stats")["dropped_connections"]
    assert dropped >= 3 and first.resolved_by_lookup == dropped
    assert first.outcome.status == "completed"
    sandbox.admin("DELETE", "/_sandbox/faults")
    second = execute_batch(engine, make_gateway(sandbox, retries=0), OCT)
    assert second.sent == 0 and _processing(engine) == 0
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 20


def test_unknown_outcome_with_stale_key_is_resolved_by_lookup_not_a_second_transfer(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000, "bob": 7_000, "carol": 9_000})
    crash_after_stripe_call(engine, sandbox, {"alice", "bob"})
    assert _processing(engine) == 2 and len(sandbox_transfers(stripe_client)) == 2
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 25 * 3600})  # Stripe pruned the keys
    report = execute_batch(engine, make_gateway(sandbox, retries=0), OCT, clock=later(25))
    assert report.resolved_by_lookup == 2 and report.sent == 1  # only carol was sent
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 3


def test_fresh_unknown_outcome_is_looked_up_before_its_key_is_resent(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000})
    crash_after_stripe_call(engine, sandbox, {"alice"})
    report = execute_batch(engine, make_gateway(sandbox, retries=0), OCT)
    # Whatever its age, the open attempt is found in the transfer group: its key is not even re-sent.
    assert report.sent == 0 and report.resolved_by_lookup == 1 and report.group_list_requests == 1
    assert sandbox.admin("GET", "/_sandbox/stats")["replays"] == 0
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 1


def test_stale_unknown_with_no_transfer_is_sent_again_with_the_same_key(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"alice": 5_000})
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "error_500_before_commit", "path_prefix": "/v1/transfers"})
    execute_batch(engine, make_gateway(sandbox, retries=0), OCT)
    with engine.connect() as conn:
        key_before = conn.execute(sa.text("SELECT idempotency_key FROM transfer_attempt")).scalar_one()
    assert _processing(engine) == 1 and sandbox_transfers(stripe_client) == []
    sandbox.admin("DELETE", "/_sandbox/faults")
    sandbox.admin("POST", "/_sandbox/clock/advance", {"seconds": 25 * 3600})
    execute_batch(engine, make_gateway(sandbox, retries=0), OCT, clock=later(25))
    with engine.connect() as conn:
        attempts = conn.execute(sa.text("SELECT idempotency_key, state FROM transfer_attempt")).all()
    assert attempts == [(key_before, "posted")]
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 1


def test_two_executions_started_together_pay_once(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, TWELVE)
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "latency", "latency_ms": 50})
    errors = []

    def run():
        try:
            execute_batch(engine, make_gateway(sandbox), OCT, settings=ExecutionSettings(workers=4))
        except Exception as exc:  # surfaced below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 12
    assert {s for s, _ in item_states(engine).values()} == {"posted"}


def test_429_storm_ends_with_everything_posted(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, TWELVE)
    sandbox.admin(
        "POST",
        "/_sandbox/faults",
        {"mode": "rate_limit_429", "probability": 0.6, "count": 25, "seed": 3, "path_prefix": "/v1/transfers"},
    )
    report = execute_batch(
        engine,
        make_gateway(sandbox),
        OCT,
        settings=ExecutionSettings(workers=4, same_key_attempts=12, backoff_base_seconds=0.01, backoff_max_seconds=0.1),
    )
    assert report.sent > 12  # the 429s were really met and retried
    assert report.outcome.status == "completed"
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 12


_CHILD = """
import sys
from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.core.periods import parse_period
from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway
gateway = StripeGateway(GatewayConfig(api_key="sk_test_sorae_tests", api_base=sys.argv[2], rate_limit_per_second=1000))
engine = create_ledger_engine(sys.argv[1])
execute_batch(engine, gateway, parse_period("2026-10"), settings=ExecutionSettings(workers=2))
"""


def test_process_killed_mid_batch_then_restarted_pays_each_item_once(engine, ledger_url, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {f"aff{i:02d}": 1_000 + i for i in range(30)})
    sandbox.admin("POST", "/_sandbox/faults", {"mode": "latency", "latency_ms": 150})
    child = subprocess.Popen([sys.executable, "-c", _CHILD, ledger_url, sandbox.url], env=os.environ.copy())
    deadline = time.monotonic() + 60
    while len(sandbox_transfers(stripe_client)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    partial = len(sandbox_transfers(stripe_client))
    assert 5 <= partial < 30  # really killed in the middle
    sandbox.admin("DELETE", "/_sandbox/faults")
    report = execute_batch(engine, make_gateway(sandbox), OCT)
    assert report.outcome.status == "completed"
    assert len(assert_paid_exactly_once(engine, stripe_client)) == 30
