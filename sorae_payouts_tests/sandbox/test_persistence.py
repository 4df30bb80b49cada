"""State lives in the SQLite file: a restarted sandbox sees the same world."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from sorae_sandbox import SandboxServer, accounts
from sorae_sandbox.wire import decode_form, fingerprint

from .conftest import STARTING_BALANCES, balance_of, make_client, raw_request


def test_state_survives_restart(state_path):
    first = SandboxServer(state_path=state_path, balances=STARTING_BALANCES).start()
    client = make_client(first.url)
    acct = client.v1.accounts.create(params={"capabilities": {"transfers": {"requested": True}}})
    params = {"amount": 900, "currency": "usd", "destination": acct.id, "transfer_group": "g"}
    tr = client.v1.transfers.create(params=params, options={"idempotency_key": "persist"})
    first.admin("POST", "/_sandbox/clock/advance", {"seconds": 3600})
    first.admin("POST", f"/_sandbox/accounts/{acct.id}", {"payouts_enabled": False})
    first.stop()
    with pytest.raises(Exception):
        client.v1.balance.retrieve()  # really stopped

    # Same starting balances again: they must not refill the drained balance.
    with SandboxServer(state_path=state_path, balances=STARTING_BALANCES) as second:
        client = make_client(second.url)
        assert client.v1.accounts.retrieve(acct.id).payouts_enabled is False
        assert [t.id for t in client.v1.transfers.list(params={"transfer_group": "g"}).data] == [tr.id]
        assert balance_of(client, "usd") == STARTING_BALANCES["usd"] - 900
        assert second.admin("GET", "/_sandbox/clock")["offset_seconds"] == 3600
        replay = client.v1.transfers.create(params=params, options={"idempotency_key": "persist"})
        assert replay.id == tr.id and replay.last_response.headers["Idempotent-Replayed"] == "true"

        second.admin("POST", "/_sandbox/reset")
        assert client.v1.transfers.list().data == []
        assert balance_of(client, "usd") == STARTING_BALANCES["usd"]


def test_temporary_state_without_path():
    with SandboxServer(balances={"usd": 5}) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert balance_of(make_client(server.url), "usd") == 5


def test_command_line_entry_point(tmp_path):
    state = tmp_path / "cli.sqlite3"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sorae_sandbox",
            "--port",
            "0",
            "--state",
            str(state),
            "--balance",
            "usd=1234",
            "--balance",
            "EUR=5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        status, _, body = raw_request(url + "/v1/balance", headers={"Authorization": "Bearer sk_test_cli"})
        assert status == 200
        assert {b["currency"]: b["amount"] for b in body["available"]} == {"eur": 5, "usd": 1234}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
    assert state.exists()


def test_form_decoding_of_bracket_keys():
    decoded = decode_form(
        "amount=5&metadata[item_id]=x&metadata[run]=&capabilities[transfers][requested]=true&expand[0]=a&expand[1]=b"
    )
    assert decoded == {
        "amount": "5",
        "metadata": {"item_id": "x", "run": ""},
        "capabilities": {"transfers": {"requested": "true"}},
        "expand": ["a", "b"],
    }


# The schema of state files written before the sandbox served several platform accounts.
SINGLE_PLATFORM_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE balances (currency TEXT PRIMARY KEY, available INTEGER NOT NULL);
CREATE TABLE accounts (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    invalid INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE TABLE transfers (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    destination TEXT NOT NULL, transfer_group TEXT, data TEXT NOT NULL);
CREATE INDEX transfers_destination ON transfers (destination, seq);
CREATE INDEX transfers_group ON transfers (transfer_group, seq);
CREATE TABLE reversals (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    transfer TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX reversals_transfer ON reversals (transfer, seq);
CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    body TEXT NOT NULL, headers TEXT NOT NULL, request_id TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX idempotency_created ON idempotency (created_at);
"""


def test_a_state_file_from_before_platforms_becomes_the_default_platform(state_path):
    now = int(time.time())
    acct = accounts.build(
        {
            "type": "express",
            "country": "US",
            "email": None,
            "capabilities": ["transfers"],
            "metadata": {},
            "business_type": None,
            "default_currency": "usd",
        },
        now,
    )
    params = {"amount": "900", "currency": "usd", "destination": acct["id"], "transfer_group": "g"}
    transfer = {
        "id": "tr_old0000000000000000001",
        "object": "transfer",
        "amount": 900,
        "amount_reversed": 0,
        "balance_transaction": "txn_old",
        "created": now,
        "currency": "usd",
        "description": None,
        "destination": acct["id"],
        "destination_payment": "py_old",
        "livemode": False,
        "metadata": {},
        "reversed": False,
        "source_transaction": None,
        "source_type": "card",
        "transfer_group": "g",
    }
    conn = sqlite3.connect(state_path)
    conn.executescript(SINGLE_PLATFORM_SCHEMA)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("platform_account", "acct_OldPlatform000001"), ("platform_created", str(now - 100))],
    )
    conn.execute("INSERT INTO balances VALUES ('usd', 99100)")
    conn.execute("INSERT INTO accounts (id, data) VALUES (?, ?)", (acct["id"], json.dumps(acct)))
    conn.execute(
        "INSERT INTO transfers (id, destination, transfer_group, data) VALUES (?, ?, 'g', ?)",
        (transfer["id"], acct["id"], json.dumps(transfer)),
    )
    conn.execute(
        "INSERT INTO idempotency VALUES ('old-key', ?, 200, ?, '{}', 'req_old', ?)",
        (fingerprint("POST", "/v1/transfers", params), json.dumps(transfer), now),
    )
    conn.commit()
    conn.close()

    with SandboxServer(state_path=state_path, balances=STARTING_BALANCES) as server:
        client = make_client(server.url)
        assert client.v1.accounts.retrieve_current().id == "acct_OldPlatform000001"
        assert client.v1.accounts.retrieve(acct["id"]).capabilities.transfers == "active"
        assert balance_of(client, "usd") == 99_100  # kept, not re-seeded
        assert balance_of(client, "eur") == STARTING_BALANCES["eur"]  # a currency the file did not have
        assert [t.id for t in client.v1.transfers.list(params={"transfer_group": "g"}).data] == [transfer["id"]]
        replay = client.v1.transfers.create(
            params={"amount": 900, "currency": "usd", "destination": acct["id"], "transfer_group": "g"},
            options={"idempotency_key": "old-key"},
        )
        assert replay.id == transfer["id"] and replay.last_response.headers["Idempotent-Replayed"] == "true"
        fresh = client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct["id"]})
        assert fresh.source_transaction is None and balance_of(client, "usd") == 99_000
    with SandboxServer(state_path=state_path) as again:  # migrated once, opened as a current file
        assert make_client(again.url).v1.accounts.retrieve_current().id == "acct_OldPlatform000001"


def test_command_line_platform_options(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sorae_sandbox",
            "--port",
            "0",
            "--state",
            str(tmp_path / "p.sqlite3"),
            "--balance",
            "usd=10",
            "--api-key",
            "sk_test_cli_default_1",
            "--platform",
            "sk_test_cli_platform_2:usd=77,EUR=3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().split("listening on ")[1].split()[0]

        def balance(key):
            return raw_request(url + "/v1/balance", headers={"Authorization": f"Bearer {key}"})

        status, _, body = balance("sk_test_cli_default_1")
        assert status == 200 and {b["currency"]: b["amount"] for b in body["available"]} == {"usd": 10}
        status, _, body = balance("sk_test_cli_platform_2")
        assert status == 200 and {b["currency"]: b["amount"] for b in body["available"]} == {"eur": 3, "usd": 77}
        status, _, body = balance("sk_test_cli_unknown_3")
        assert status == 401 and body["error"]["message"] == "Invalid API Key provided: sk_test_*********wn_3"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
