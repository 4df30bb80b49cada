"""Execution fixtures: a real sandbox over HTTP, the official SDK, an approved batch in the ledger."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import stripe

from sorae_payouts.execution import attempts as ledger
from sorae_payouts.execution.pay_items import ExecutionReport, ExecutionRun, ExecutionSettings, utcnow
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.registry.programs import DEFAULT_PROGRAM
from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway
from sorae_payouts_tests.factory import NOW, OCT, add_affiliate, add_commission, build_manifest, finalize_period
from sorae_payouts_tests.factory import approve as approve_as
from sorae_sandbox import SandboxServer

API_KEY = "sk_test_sorae_tests"
BALANCES = {"usd": 10_000_000_00, "eur": 10_000_000_00, "jpy": 10_000_000_000}


@pytest.fixture
def sandbox(tmp_path):
    server = SandboxServer(port=0, state_path=tmp_path / "sandbox.sqlite3", balances=BALANCES).start()
    yield server
    server.stop()


@pytest.fixture
def stripe_client(sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.url}, max_network_retries=0)


def make_gateway(sandbox, *, retries: int = 2, rate: float = 1_000.0) -> StripeGateway:
    return StripeGateway(
        GatewayConfig(
            api_key=API_KEY,
            api_base=sandbox.url,
            max_network_retries=retries,
            timeout_seconds=10,
            rate_limit_per_second=rate,
        )
    )


def seed_batch(
    engine,
    stripe_client,
    amounts: dict[str, int],
    *,
    currency: str = "usd",
    missing: set[str] = frozenset(),
    approve: bool = True,
    program_id: str = DEFAULT_PROGRAM,
    accounts: dict[str, str] | None = None,
) -> dict[str, str]:
    """The program's affiliates with accounts on the sandbox platform of `stripe_client` (an unknown
    account id for names in `missing`, the given one for names in `accounts`), one commission each in
    October, finalized, manifest built (and approved). Returns affiliate -> account."""
    accounts = dict(accounts or {})
    for name, amount in amounts.items():
        if name in missing:
            accounts[name] = f"acct_missing{name}"
        elif name not in accounts:
            accounts[name] = stripe_client.v1.accounts.create(
                params={
                    "type": "express",
                    "country": "US",
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {"affiliate_id": name},
                }
            ).id
        add_affiliate(engine, name, currency=currency, account=accounts[name], program_id=program_id)
        add_commission(engine, name, amount, currency=currency, program_id=program_id)
    finalize_period(engine, OCT, now=NOW, holding_days=3, program_id=program_id)
    build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "1.00"}), now=NOW, program_id=program_id)
    if approve:
        approve_as(engine, OCT, "tests", program_id=program_id)
    return accounts


def sandbox_transfers(stripe_client, transfer_group: str = "payout_2026-10") -> list:
    transfers, params = [], {"transfer_group": transfer_group, "limit": 100}
    while True:
        page = stripe_client.v1.transfers.list(params=params)
        transfers += page.data
        if not page.has_more:
            return transfers
        params["starting_after"] = page.data[-1].id


def assert_paid_exactly_once(engine, stripe_client) -> dict[int, str]:
    """The check that matters everywhere: per payment (program, period, affiliate, currency, from the
    transfers' metadata) at most one transfer in Stripe; the posted ledger amounts equal the Stripe
    transfer amounts; and a transfer this ledger has not posted belongs to one of its `blocked` items
    (paid outside this ledger, parked for an operator). Returns item id -> transfer id."""
    transfers = sandbox_transfers(stripe_client)
    per_payment = Counter(payment_of(t) for t in transfers)
    assert max(per_payment.values(), default=0) <= 1, f"paid twice: {[k for k, v in per_payment.items() if v > 1]}"
    by_id = {t.id: t for t in transfers}
    with engine.connect() as conn:
        posted = conn.execute(
            sa.text(
                "SELECT a.payout_item_id, a.stripe_transfer_id, a.amount_minor, a.currency, a.destination, "
                "i.affiliate_id "
                "FROM transfer_attempt a JOIN payout_item i ON i.payout_item_id = a.payout_item_id "
                "WHERE a.state = 'posted'"
            )
        ).all()
        # A reversal seen by refresh moves a paid item on to (partially_)reversed: still paid once.
        posted_items = conn.execute(
            sa.text("SELECT COUNT(*) FROM payout_item WHERE status IN ('posted', 'partially_reversed', 'reversed')")
        ).scalar_one()
        blocked = {
            (a, c)
            for a, c in conn.execute(sa.text("SELECT affiliate_id, currency FROM payout_item WHERE status = 'blocked'"))
        }
    assert len(posted) == posted_items
    for item_id, transfer_id, amount, currency, destination, affiliate in posted:
        t = by_id[transfer_id]
        assert (t.amount, t.currency, t.destination, t.metadata["affiliate_id"]) == (
            amount,
            currency,
            destination,
            affiliate,
        )
    outside = [t for t in transfers if t.id not in {p[1] for p in posted}]
    assert {(payment_of(t)[2], payment_of(t)[3]) for t in outside} <= blocked, "a transfer the ledger ignores"
    return {int(i): t for i, t, *_ in posted}


def payment_of(transfer) -> tuple[str, str, str, str]:
    meta = transfer.metadata.to_dict()
    return (
        meta.get("program_id", "default"),
        meta["period"],
        meta["affiliate_id"],
        meta.get("currency", transfer.currency),
    )


def item_states(engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT affiliate_id, status, hold_reason FROM payout_item")).all()
    return {a: (s, h) for a, s, h in rows}


def later(hours: float):
    base = datetime.now(UTC)
    return lambda: base + timedelta(hours=hours)


def crash_after_stripe_call(engine, sandbox, names):
    """Reproduce a process that died between Stripe's answer and the ledger commit: the attempt is
    claimed (committed) and the transfer sent with its key, but the outcome is never recorded."""
    gateway = make_gateway(sandbox)
    with engine.connect() as conn:
        items = [i for i in ledger.work_items(conn, "payout_2026-10") if i.affiliate_id in names]
    run = ExecutionRun(
        engine,
        gateway,
        ExecutionSettings(),
        "payout_2026-10",
        "2026-10",
        ExecutionReport("payout_2026-10", "2026-10"),
        utcnow,
        None,
    )
    for item in items:
        attempt = ledger.claim(
            engine, item, paying_account=gateway.paying_account(), identity=run.identity(item), now=utcnow()
        )
        assert gateway.create_transfer(run._request(item, attempt), attempt.idempotency_key).transfer


# --- programs, funding and paying accounts (issue 11) ----------------------------------------------
SECOND_KEY = "sk_test_sorae_second_platform"


@pytest.fixture
def second_platform(sandbox, monkeypatch) -> stripe.StripeClient:
    """A second platform account in the sandbox, its key in ACME_STRIPE_KEY; its SDK client."""
    sandbox.add_platform(SECOND_KEY, BALANCES)
    monkeypatch.setenv("ACME_STRIPE_KEY", SECOND_KEY)
    return stripe.StripeClient(SECOND_KEY, base_addresses={"api": sandbox.url}, max_network_retries=0)


def add_program(engine, program_id: str, ref: str | None = None):
    from sorae_payouts.registry.programs import add_program as register

    return register(
        engine,
        program_id,
        name=program_id.title(),
        paying_account_ref=ref,
        added_by="test",
        now=datetime(2000, 1, 1, tzinfo=UTC),
    )


def charge(client: stripe.StripeClient, amount: int, currency: str = "usd") -> str:
    """A succeeded charge whose funds are available at once (Stripe's tok_bypassPending)."""
    return client.v1.charges.create(params={"amount": amount, "currency": currency, "source": "tok_bypassPending"}).id


def topup(client: stripe.StripeClient, amount: int, currency: str = "usd") -> str:
    return client.v1.topups.create(params={"amount": amount, "currency": currency}).id


def fund(
    engine, gateway, program_id: str, *, charge_id: str | None = None, topup_id: str | None = None, now: datetime = NOW
):
    from sorae_payouts.registry.funding import record_funding

    return record_funding(
        engine, gateway, program_id, charge_id=charge_id, topup_id=topup_id, recorded_by="finance", now=now
    )


def attempts_of(engine, program_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT i.affiliate_id, a.state, a.amount_minor, a.source_transaction, a.idempotency_key, "
                "a.error_code, "
                "a.program_id, i.status, i.hold_reason FROM transfer_attempt a JOIN payout_item i "
                "ON i.payout_item_id = a.payout_item_id WHERE i.program_id = :p ORDER BY a.attempt_pk"
            ),
            {"p": program_id},
        ).all()


def program_items(engine, program_id: str) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT affiliate_id, status, hold_reason FROM payout_item WHERE program_id = :p"),
            {"p": program_id},
        ).all()
    return {a: (s, h) for a, s, h in rows}
