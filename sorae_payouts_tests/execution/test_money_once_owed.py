"""Money once owed elsewhere is paid once, even when the ledger forgets a payment (issue 16, defect 1), on
SQLite and PostgreSQL, against the sandbox over HTTP.

September: a3's account cannot receive transfers, a3 (300.00) is held. A backup is taken; `refresh` then
pays a3's September once the account is fixed; the backup is restored. Before, October carried the 300.00
again and paid 380.00: a3 received 680.00 for 380.00 owed, and October's reconciliation passed.

Now the month end asks Stripe before it carries an unpaid item (and records the answer), the October build
is refused naming the transfer that paid September, `refresh` of September adopts that payment, and October
pays 80.00. Owed-again money (a reversed amount decided owed again) is checked the same way before it is paid
in a later month, and every transfer names what it pays besides its month in its metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sorae_payouts.aftercare.refresh import refresh_batch
from sorae_payouts.execution.pay_batch import execute_batch
from sorae_payouts.month_end.manifest import ManifestError, PayoutPolicy
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.use_cases.month_end import unpaid_checker
from sorae_payouts_tests.execution.conftest import make_gateway, sandbox_transfers
from sorae_payouts_tests.factory import (
    add_affiliate,
    add_commission,
    approve,
    build_manifest,
    decide_reversal,
    finalize_period,
)
from sorae_payouts_tests.ledger_backup import Backup

SEP, OCT, NOV = (datetime(2026, m, 1, tzinfo=UTC).date() for m in (9, 10, 11))
POLICY = PayoutPolicy.from_major({"usd": "1.00"})


def _close(engine, sandbox, month, now, *, check=True):
    finalize_period(engine, month, now=now, holding_days=0)
    checker = unpaid_checker(ProgramGateways(make_gateway(sandbox).config, engine)) if check else None
    build_manifest(engine, month, policy=POLICY, now=now, unpaid_check=checker)
    approve(engine, month, now=now)


def _earn(engine, affiliate, amount, month):
    return add_commission(engine, affiliate, amount, earned_at=datetime(month.year, month.month, 10, tzinfo=UTC))


def _paid_to(stripe_client, affiliate) -> list[int]:
    every = [t for m in ("2026-09", "2026-10", "2026-11") for t in sandbox_transfers(stripe_client, f"payout_{m}")]
    return sorted(t.amount - t.amount_reversed for t in every if t.metadata["affiliate_id"] == affiliate)


def test_a_restored_backup_never_pays_a_carried_amount_twice(engine, ledger_url, sandbox, stripe_client, tmp_path):
    a1 = stripe_client.v1.accounts.create(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    a3 = stripe_client.v1.accounts.create(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    sandbox.admin("POST", f"/_sandbox/accounts/{a3.id}", {"transfers": "inactive"})
    add_affiliate(engine, "a1", account=a1.id)
    add_affiliate(engine, "a3", account=a3.id)
    _earn(engine, "a1", 10_000, SEP)
    _earn(engine, "a3", 30_000, SEP)
    _close(engine, sandbox, SEP, datetime(2026, 10, 5, tzinfo=UTC))
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, SEP)
    assert _paid_to(stripe_client, "a3") == []  # held: the account cannot receive transfers

    backup = Backup(engine, ledger_url, tmp_path)
    sandbox.admin("POST", f"/_sandbox/accounts/{a3.id}", {"transfers": "active"})
    refresh_batch(engine, gateway, SEP)  # the hold is released and September's 300.00 is paid
    assert _paid_to(stripe_client, "a3") == [30_000]
    backup.restore()  # the ledger forgets that payment

    _earn(engine, "a3", 8_000, OCT)
    with pytest.raises(ManifestError, match=r"unpaid in the ledger but was paid at Stripe by tr_\w+.*refresh 2026-09"):
        _close(engine, sandbox, OCT, datetime(2026, 11, 5, tzinfo=UTC))
    with engine.connect() as conn:  # Stripe's answer is on the books; nothing was carried
        found = conn.execute(sa.text("SELECT found_transfer_id FROM payout_item_stripe_check")).scalars().all()
        assert len(found) == 1 and found[0].startswith("tr_")
        assert conn.execute(sa.text("SELECT COUNT(*) FROM payout_item_carry")).scalar_one() == 0

    refresh_batch(engine, gateway, SEP)  # the runbook's step: the group scan adopts September's transfer
    _close(engine, sandbox, OCT, datetime(2026, 11, 5, tzinfo=UTC))
    execute_batch(engine, gateway, OCT)
    assert _paid_to(stripe_client, "a3") == [8_000, 30_000]  # 380.00 for 380.00 owed


def test_without_a_stripe_answer_an_unpaid_item_is_not_carried(engine, sandbox, stripe_client):
    """The database refuses the carry record without a current "not paid" answer, and a build without a way
    to ask Stripe is refused for the program that has something to carry."""
    bad = stripe_client.v1.accounts.create(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    sandbox.admin("POST", f"/_sandbox/accounts/{bad.id}", {"transfers": "inactive"})
    add_affiliate(engine, "a3", account=bad.id)
    _earn(engine, "a3", 30_000, SEP)
    _close(engine, sandbox, SEP, datetime(2026, 10, 5, tzinfo=UTC))
    execute_batch(engine, make_gateway(sandbox), SEP)
    _earn(engine, "a3", 8_000, OCT)
    with pytest.raises(ManifestError, match="carried only after Stripe confirms it was not paid"):
        _close(engine, sandbox, OCT, datetime(2026, 11, 5, tzinfo=UTC), check=False)
    with engine.connect() as conn:
        item = conn.execute(sa.text("SELECT payout_item_id FROM payout_item WHERE status = 'pending'")).scalar_one()
    with pytest.raises(sa.exc.DBAPIError, match="carried only after Stripe confirmed"):
        with engine.begin() as conn:  # an insider writing the carry record by hand
            conn.execute(
                sa.text(
                    "INSERT INTO payout_item_carry (payout_item_id, from_batch_id, into_batch_id, affiliate_id, "
                    "currency, amount_minor, unpaid_status, reason, carried_at) VALUES (:i, 'payout_2026-09', "
                    "'payout_2026-09', 'a3', 'usd', 30000, 'pending', 'by hand', :n)"
                ),
                {"i": item, "n": datetime(2026, 11, 5, tzinfo=UTC)},
            )
    _close(engine, sandbox, OCT, datetime(2026, 11, 5, tzinfo=UTC))  # asked: not paid, carried
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT amount_minor FROM payout_item_carry")).scalar_one() == 30_000


def test_owed_again_money_is_never_paid_twice_after_a_restore(engine, ledger_url, sandbox, stripe_client, tmp_path):
    """a1's September 100.00 is paid, 40.00 of it reversed. The decision "owed again" carries it into October,
    paid with it (its transfer names the reversed transfer in `owed_again_of`). A backup from before the decision
    is restored: October is built again without it (its transfer of another amount blocks the item), the
    operator decides again and the 40.00 goes into November. Before, November paid the 40.00 a second time."""
    a1 = stripe_client.v1.accounts.create(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    add_affiliate(engine, "a1", account=a1.id)
    _earn(engine, "a1", 10_000, SEP)
    _close(engine, sandbox, SEP, datetime(2026, 10, 5, tzinfo=UTC))
    gateway = make_gateway(sandbox)
    execute_batch(engine, gateway, SEP)
    [september] = sandbox_transfers(stripe_client, "payout_2026-09")
    stripe_client.v1.transfers.reversals.create(september.id, params={"amount": 4_000})
    refresh_batch(engine, gateway, SEP)
    with engine.connect() as conn:
        item = conn.execute(sa.text("SELECT payout_item_id FROM payout_item WHERE status <> 'posted'")).scalar_one()
    backup = Backup(engine, ledger_url, tmp_path)

    decide_reversal(engine, item, "owe_again", now=datetime(2026, 11, 2, tzinfo=UTC))
    _earn(engine, "a1", 5_000, OCT)
    _close(engine, sandbox, OCT, datetime(2026, 11, 5, tzinfo=UTC))
    execute_batch(engine, gateway, OCT)
    [october] = sandbox_transfers(stripe_client, "payout_2026-10")
    assert (october.amount, october.metadata["owed_again_of"]) == (9_000, september.id)

    backup.restore()
    _earn(engine, "a1", 5_000, OCT)
    _close(engine, sandbox, OCT, datetime(2026, 11, 5, tzinfo=UTC))  # without the decision: 50.00
    execute_batch(engine, gateway, OCT)  # Stripe holds October's 90.00 under its key: the item is blocked
    decide_reversal(engine, item, "owe_again", now=datetime(2026, 12, 2, tzinfo=UTC))
    _earn(engine, "a1", 2_000, NOV)
    _close(engine, sandbox, NOV, datetime(2026, 12, 5, tzinfo=UTC))
    report = execute_batch(engine, gateway, NOV)
    assert sandbox_transfers(stripe_client, "payout_2026-11") == []
    [why] = report.blocked.values()
    assert why.startswith("owed_again_already_paid") and october.id in why
    # 100.00 + 50.00 + 20.00 owed (the 40.00 reversed, owed again once): 60.00 + 90.00 paid, the rest blocked.
    assert _paid_to(stripe_client, "a1") == [6_000, 9_000]
