"""Pre-flight holds, never exceptions: an account Stripe does not let us read (403 account_invalid, on
the single-account and on the list-accounts path), and a connected account shared by two affiliates."""

from __future__ import annotations

import json

import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.cli.main import app
from sorae_payouts.execution.pay_batch import ExecutionSettings, execute_batch
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.portal.history import affiliate_history
from sorae_payouts_tests.execution.conftest import assert_paid_exactly_once, item_states, make_gateway, seed_batch
from sorae_payouts_tests.factory import (
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    approve,
    build_manifest,
    finalize_period,
)


def test_an_unknown_account_is_held_on_the_single_account_path(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"ok": 5_000, "ghost": 5_000}, missing={"ghost"})
    report = execute_batch(engine, make_gateway(sandbox), OCT, settings=ExecutionSettings(account_list_threshold=100))
    states = item_states(engine)
    assert states["ok"] == ("posted", None)
    assert states["ghost"][0] == "pending"
    assert states["ghost"][1] == (
        "connected account acct_missingghost not found in Stripe, or not connected to this "
        "platform (account_invalid): check the affiliate's stripe_account_id"
    )
    assert list(report.held.values()) == [states["ghost"][1]]
    assert_paid_exactly_once(engine, stripe_client)


def test_an_unknown_account_is_held_on_the_list_accounts_path(engine, sandbox, stripe_client):
    seed_batch(engine, stripe_client, {"a": 5_000, "b": 6_000, "ghost": 7_000}, missing={"ghost"})
    # Above the threshold, pre-flight pages through all connected accounts; one that is not listed is
    # then asked for on its own, which Stripe answers with a 403.
    report = execute_batch(engine, make_gateway(sandbox), OCT, settings=ExecutionSettings(account_list_threshold=1))
    states = item_states(engine)
    assert states["a"] == ("posted", None) and states["b"] == ("posted", None)
    assert states["ghost"][0] == "pending" and "(account_invalid)" in states["ghost"][1]
    assert report.outcome.count("held") == 1 and report.outcome.count("posted") == 2


def test_the_list_accounts_path_stops_when_the_platform_has_far_more_accounts_than_the_batch(
    engine, sandbox, stripe_client
):
    # A platform shared by many programs: 250 connected accounts that this batch does not pay, created
    # after the batch's own (Stripe lists newest first, so the batch's accounts come last).
    seed_batch(engine, stripe_client, {"a": 5_000, "b": 6_000, "ghost": 7_000}, missing={"ghost"})
    for _ in range(250):
        stripe_client.v1.accounts.create(params={"type": "express", "country": "US"})
    gateway = make_gateway(sandbox)
    report = execute_batch(engine, gateway, OCT, settings=ExecutionSettings(account_list_threshold=1))
    # Budget: twice the 3 destinations = 6 accounts, so one page of 100 and then one GET per destination
    # (listing all 253 accounts would cost 3 pages and still GET the ghost).
    assert gateway.request_counts["accounts.list"] == 1
    assert gateway.request_counts["accounts.retrieve"] == 3
    states = item_states(engine)
    assert states["a"] == ("posted", None) and states["b"] == ("posted", None)
    assert states["ghost"][0] == "pending" and "(account_invalid)" in states["ghost"][1]
    assert report.outcome.count("posted") == 2


def test_a_shared_destination_is_held_unless_the_affiliate_may_share(
    engine, ledger_url, sandbox, stripe_client, monkeypatch
):
    shared = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    agency = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    for name, account in (
        ("mallory", shared),
        ("victim", shared),
        ("agency_a", agency),
        ("agency_b", agency),
        ("solo", None),
    ):
        add_affiliate(engine, name, account=account or "auto")
        add_commission(engine, name, 10_000)
    with engine.begin() as conn:  # the agency's affiliates are explicitly allowed to share an account
        conn.execute(
            sa.text("UPDATE affiliate SET allow_shared_destination = :yes WHERE affiliate_id LIKE 'agency%'"),
            {"yes": True},
        )
    solo = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
    ).id
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE affiliate SET stripe_account_id = :a WHERE affiliate_id = 'solo'"), {"a": solo})
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW)
    approve(engine, OCT)

    report = execute_batch(engine, make_gateway(sandbox), OCT)
    states = item_states(engine)
    assert {n: s for n, (s, _) in states.items()} == {
        "mallory": "pending",
        "victim": "pending",
        "agency_a": "posted",
        "agency_b": "posted",
        "solo": "posted",
    }
    assert states["mallory"][1].startswith(f"shared_destination: also used by victim (connected account {shared})")
    assert states["victim"][1].startswith("shared_destination: also used by mallory")
    assert len(report.held) == 2
    assert_paid_exactly_once(engine, stripe_client)

    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)  # batch show names the hold for the operator
    shown = CliRunner().invoke(app, ["batch", "show", "2026-10", "--json"])
    reasons = {i["affiliate_id"]: i["hold_reason"] for i in json.loads(shown.output)["items"]}
    assert reasons["victim"].startswith("shared_destination: also used by mallory")
    table = CliRunner().invoke(app, ["batch", "show", "2026-10"])
    assert "shared_destination: also used by mallory" in table.output.replace("\n", "")
    with engine.connect() as conn:  # the affiliate's history says it in plain words, naming nobody else
        [entry] = affiliate_history(conn, "victim")
    assert entry.status_code == "on_hold" and "also registered for another partner" in entry.reason
    assert "mallory" not in entry.reason

    # A refresh releases holds of accounts that became ready, never a shared_destination hold.
    refresh_batch(engine, make_gateway(sandbox), OCT)
    assert item_states(engine)["victim"][1].startswith("shared_destination: also used by mallory")

    # The frozen manifest still sends mallory's item to that account: fixing the affiliates file alone
    # releases nobody in this batch. Marking the rightful owner as allowed to share does.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE affiliate SET stripe_account_id = NULL WHERE affiliate_id = 'mallory'"))
    execute_batch(engine, make_gateway(sandbox), OCT)
    assert item_states(engine)["victim"][0] == "pending"
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE affiliate SET allow_shared_destination = :yes WHERE affiliate_id = 'victim'"), {"yes": True}
        )
    execute_batch(engine, make_gateway(sandbox), OCT)
    states = item_states(engine)
    assert states["victim"] == ("posted", None) and states["mallory"][0] == "pending"
    assert_paid_exactly_once(engine, stripe_client)
