"""Idempotency keys, transfer groups and metadata derived from business identity only."""

from __future__ import annotations

from datetime import date

from sorae_payouts.execution.identity import (
    MAX_KEY_LENGTH,
    PaymentIdentity,
    idempotency_key,
    idempotency_key_prefix,
    is_legacy_key,
    key_basis,
    transfer_group,
    transfer_identity,
    transfer_metadata,
)

ALICE = PaymentIdentity("default", "2026-10", "alice", "usd")


def test_key_names_the_paying_account_program_period_affiliate_currency_and_attempt():
    assert idempotency_key("acct_1Plat", ALICE, 1) == "sorae:v2:acct_1Plat:default:2026-10:alice:usd:attempt-1"
    assert idempotency_key("acct_1Plat", ALICE, 2).endswith(":attempt-2")
    assert key_basis("acct_1Plat", ALICE) == {
        "paying_account": "acct_1Plat",
        "program_id": "default",
        "period": "2026-10",
        "affiliate_id": "alice",
        "currency": "usd",
    }
    long = PaymentIdentity("default", "2026-10", "a" * 64, "usd")
    for identity in (ALICE, long):  # the database appends the number to the prefix
        assert idempotency_key_prefix("acct_" + "x" * 150, identity) + "7" == idempotency_key(
            "acct_" + "x" * 150, identity, 7
        )


def test_every_part_of_the_identity_changes_the_key():
    base = idempotency_key("acct_A", ALICE, 1)
    others = [
        idempotency_key("acct_B", ALICE, 1),
        idempotency_key("acct_A", PaymentIdentity("shop2", "2026-10", "alice", "usd"), 1),
        idempotency_key("acct_A", PaymentIdentity("default", "2026-11", "alice", "usd"), 1),
        idempotency_key("acct_A", PaymentIdentity("default", "2026-10", "alicf", "usd"), 1),
        idempotency_key("acct_A", PaymentIdentity("default", "2026-10", "alice", "eur"), 1),
    ]
    assert len({base, *others}) == 6


def test_odd_affiliate_ids_are_hashed_so_they_cannot_collide_or_break_the_format():
    colon = idempotency_key("acct_A", PaymentIdentity("default", "2026-10", "a:usd:attempt-1", "usd"), 1)
    assert colon.count(":") == 7 and ":~" in colon
    spaced = idempotency_key("acct_A", PaymentIdentity("default", "2026-10", "Ali ce/é", "usd"), 1)
    assert spaced != colon and all(ord(c) < 128 for c in spaced)
    # A raw id can never look like a hashed one: '~' is not kept.
    assert ":~" in idempotency_key("acct_A", PaymentIdentity("default", "2026-10", "~abc", "usd"), 1)


def test_long_identities_stay_within_stripe_limit():
    key = idempotency_key("acct_" + "x" * 60, PaymentIdentity("p" * 64, "2026-10", "a" * 64, "usd"), 12)
    assert len(key) <= MAX_KEY_LENGTH and key.endswith(":attempt-12")
    huge = idempotency_key("acct_" + "y" * 300, ALICE, 1)
    assert len(huge) <= MAX_KEY_LENGTH


def test_transfer_group_keeps_the_batch_id_of_the_default_program():
    assert transfer_group(date(2026, 10, 1)) == "payout_2026-10"
    assert transfer_group(date(2026, 10, 1), "shop2") == "payout_shop2_2026-10"


def test_identity_is_read_back_from_new_and_previous_format_metadata():
    meta = transfer_metadata(ALICE, 2, 77)
    assert meta["payout_item_id"] == "77" and meta["attempt_number"] == "2"
    assert transfer_identity(meta, "usd") == ALICE
    legacy = {
        "sorae_ledger_id": "abc123",
        "payout_item_id": "5",
        "attempt_number": "1",
        "period": "2026-10",
        "batch_id": "payout_2026-10",
        "affiliate_id": "alice",
    }
    assert transfer_identity(legacy, "usd") == ALICE
    assert transfer_identity({"note": "manual"}, "usd") is None
    assert is_legacy_key("sorae-abc123-item-5-attempt-1") and not is_legacy_key(idempotency_key("a", ALICE, 1))
