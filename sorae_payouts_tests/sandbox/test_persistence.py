"""State lives in the SQLite file: a restarted sandbox sees the same world."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from sorae_payouts.sandbox import SandboxServer
from sorae_payouts.sandbox.wire import decode_form

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
        [sys.executable, "-m", "sorae_payouts.sandbox", "--port", "0", "--state", str(state),
         "--balance", "usd=1234", "--balance", "EUR=5"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        status, _, body = raw_request(url + "/v1/balance",
                                      headers={"Authorization": "Bearer sk_test_cli"})
        assert status == 200
        assert {b["currency"]: b["amount"] for b in body["available"]} == {"eur": 5, "usd": 1234}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
    assert state.exists()


def test_form_decoding_of_bracket_keys():
    decoded = decode_form("amount=5&metadata[item_id]=x&metadata[run]=&"
                          "capabilities[transfers][requested]=true&expand[0]=a&expand[1]=b")
    assert decoded == {"amount": "5", "metadata": {"item_id": "x", "run": ""},
                       "capabilities": {"transfers": {"requested": "true"}}, "expand": ["a", "b"]}
