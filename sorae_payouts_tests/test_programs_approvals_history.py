"""Per program after the build, on both backends: approvals by the program's own operators under the
policy frozen into its batch, unpaid and owed-again money carried within the program, and one
affiliate's history across the programs it belongs to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sorae_payouts.ledger import schema
from sorae_payouts.month_end import audit
from sorae_payouts.month_end.approvals import approve_batch, verify_batch_approvals
from sorae_payouts.month_end.batches import BatchError, load_batch, settle_batch_status
from sorae_payouts.month_end.finalize import finalize_programs
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.month_end.manifest_build import build_manifests
from sorae_payouts.portal.history import affiliate_history
from sorae_payouts.registry.operator_changes import confirm_request, request_change
from sorae_payouts.registry.programs import update_program
from sorae_payouts_tests.factory import (
    NOV,
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_program,
    approve,
    build_manifest,
    decide_reversal,
    items,
    operator_key,
    register_operators,
    stripe_says_unpaid,
)

POLICY = PayoutPolicy.from_major({"usd": "50.00"}, {"usd": "100000.00"})
BOTH = ["acme", "default"]
DEC = datetime(2026, 12, 10, tzinfo=UTC)
ACME_POLICY = {"minimum_minor": {"usd": 1_000}, "dual_approval_over_minor": {"usd": 10_000}, "holding_days": 5}


@pytest.fixture
def two_programs(engine):
    """alice in both programs: 120.00 usd with acme (two approvals needed over 100.00), 60.00 by default."""
    add_program(engine, "acme", name="Acme", policy=ACME_POLICY)
    for program, amount in (("acme", 12_000), ("default", 6_000)):
        add_affiliate(engine, "alice", program_id=program)
        add_commission(engine, "alice", amount, program_id=program, commission_id="com_1", order_id="ord_1")
    assert not finalize_programs(engine, OCT, BOTH, now=NOW, holding_days=3).refused
    assert not build_manifests(engine, OCT, BOTH, policy=POLICY, now=NOW).refused
    return engine


def _acme_batch(engine):
    with engine.connect() as conn:
        return load_batch(conn, OCT, program_id="acme")


def test_only_the_programs_operators_approve_and_each_approval_names_the_program(two_programs):
    engine, batch = two_programs, _acme_batch(two_programs)
    assert (batch.batch_id, batch.program_id) == ("payout_acme_2026-10", "acme")
    register_operators(engine, "ops")  # the default program's operator
    with pytest.raises(BatchError, match="approval refused .*program acme.*not the current key of an operator"):
        approve_batch(
            engine, OCT, key=operator_key("ops"), now=NOW, expected_hash=batch.manifest_hash, program_id="acme"
        )
    # Behind the code's back: an approval of acme's batch filed under the default program (where "ops" is
    # registered), explicitly or by leaving the column to its default. The database refuses both (0013).
    for filed_under in ({"program_id": "default"}, {}):
        with pytest.raises(sa.exc.DBAPIError, match="sorae ledger: an approval belongs to the program of its batch"):
            with engine.begin() as conn:
                conn.execute(
                    schema.batch_approval.insert().values(
                        batch_id=batch.batch_id,
                        approved_by="ops",
                        approved_at=NOW,
                        manifest_hash=batch.manifest_hash,
                        operator_id="ops",
                        key_id=operator_key("ops").key_id,
                        signature="A" * 88,
                        **filed_under,
                    )
                )
    register_operators(engine, "ann", "ben", program_id="acme")
    first = approve_batch(
        engine, OCT, key=operator_key("ann", "acme"), now=NOW, expected_hash=batch.manifest_hash, program_id="acme"
    )
    assert (first.complete, first.approvers, first.required) == (False, ["ann"], 2)
    done = approve_batch(
        engine, OCT, key=operator_key("ben", "acme"), now=NOW, expected_hash=batch.manifest_hash, program_id="acme"
    )
    assert done.complete and done.batch.approved_by == "ann, ben"
    with engine.connect() as conn:
        assert verify_batch_approvals(conn, load_batch(conn, OCT, program_id="acme")) == ["ann", "ben"]
        rows = conn.execute(
            sa.text("SELECT operator_id, program_id FROM batch_approval WHERE batch_id = :b ORDER BY approval_pk"),
            {"b": batch.batch_id},
        ).all()
    assert [tuple(r) for r in rows] == [("ann", "acme"), ("ben", "acme")]
    # The default program's batch (60.00 usd, one approval) is approved by its own operator only.
    with engine.connect() as conn:
        reviewed = load_batch(conn, OCT).manifest_hash
    with pytest.raises(BatchError, match="not the current key of an operator of program default"):
        approve_batch(engine, OCT, key=operator_key("ann", "acme"), now=NOW, expected_hash=reviewed)
    assert approve(engine, OCT, "ops").batch.approved_by == "ops"


def test_the_programs_policy_is_frozen_into_its_batch(two_programs):
    engine, batch = two_programs, _acme_batch(two_programs)
    assert batch.policy["minimum_minor"] == {"usd": 1_000}
    assert batch.policy["dual_approval_over_minor"] == {"usd": 10_000}
    with engine.connect() as conn:
        assert load_batch(conn, OCT).policy["dual_approval_over_minor"] == {"usd": 10_000_000}
    assert approve(engine, OCT, "ann", "ben", program_id="acme").required == 2
    # Thresholds change only by a policy request of one operator confirmed by another.
    request = request_change(
        engine, "acme", operator_key("ann", "acme"), "policy", thresholds={"usd": 50_000_000}, now=NOW
    )
    confirm_request(engine, "acme", request.request_pk, operator_key("ben", "acme"), now=NOW)
    update_program(engine, "acme", changed_by="test", now=NOW, policy_changes={"minimum_minor": {"usd": 20_000}})
    rebuilt = build_manifest(engine, OCT, policy=POLICY, now=NOW, program_id="acme")
    assert (rebuilt.outcome, rebuilt.manifest_hash) == ("frozen", batch.manifest_hash)
    update_program(engine, "acme", changed_by="test", now=NOW, policy_changes={"holding_days": 30})
    with engine.connect() as conn:
        after = load_batch(conn, OCT, program_id="acme")
        assert (after.policy, after.status) == (batch.policy, "approved")
        assert verify_batch_approvals(conn, after) == ["ann", "ben"]
        # The holding window is recorded with the month's finalization, as it was then.
        assert conn.execute(sa.text("SELECT program_id, holding_days FROM commission_period ORDER BY 1")).all() == [
            ("acme", 5),
            ("default", 3),
        ]


def _pay_and_fail(engine, batch_id: str, affiliate: str, *, reverse_minor: int = 0) -> int:
    """Send the item (processing -> posted, or failed) as execution records it; optionally reverse part of it."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE payout_batch SET status = 'executing' WHERE batch_id = :b"), {"b": batch_id})
        item = conn.execute(
            sa.text(
                "SELECT payout_item_id, amount_minor, program_id FROM payout_item "
                "WHERE batch_id = :b AND affiliate_id = :a"
            ),
            {"b": batch_id, "a": affiliate},
        ).one()
        state = "posted" if reverse_minor else "failed"
        conn.execute(
            schema.transfer_attempt.insert().values(
                payout_item_id=item.payout_item_id,
                attempt_number=1,
                idempotency_key=f"k-{batch_id}",
                state=state,
                amount_minor=item.amount_minor,
                currency="usd",
                destination="acct_alice",
                program_id=item.program_id,
                stripe_transfer_id="tr_1" if reverse_minor else None,
                error_code=None if reverse_minor else "account_invalid",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        for status in ("processing", state):
            conn.execute(
                sa.text("UPDATE payout_item SET status = :s WHERE payout_item_id = :i"),
                {"s": status, "i": item.payout_item_id},
            )
        if reverse_minor:
            conn.execute(
                sa.text(
                    "UPDATE payout_item SET status = 'partially_reversed', reversed_minor = :m "
                    "WHERE payout_item_id = :i"
                ),
                {"m": reverse_minor, "i": item.payout_item_id},
            )
        settle_batch_status(conn, batch_id)
    if reverse_minor:  # an operator of the item's program decides, signing the decision
        decide_reversal(engine, item.payout_item_id, "owe_again", by="ops", program_id=item.program_id)
    return item.payout_item_id


def test_unpaid_and_owed_again_money_stays_in_its_program(two_programs):
    engine = two_programs
    approve(engine, OCT, "ann", "ben", program_id="acme")
    approve(engine, OCT, "ops")
    failed = _pay_and_fail(engine, "payout_acme_2026-10", "alice")  # acme's 120.00 failed
    _pay_and_fail(engine, "payout_2026-10", "alice", reverse_minor=2_500)  # default's 60.00 paid, 25.00 reversed
    for program in BOTH:
        add_commission(
            engine,
            "alice",
            1_500,
            program_id=program,
            commission_id="com_2",
            earned_at=datetime(2026, 11, 3, tzinfo=UTC),
        )
    assert not finalize_programs(engine, NOV, BOTH, now=DEC, holding_days=3).refused
    built = build_manifests(engine, NOV, BOTH, policy=POLICY, now=DEC, unpaid_check=stripe_says_unpaid)
    acme, default = (
        items(engine, "payout_acme_2026-11")[("alice", "usd")],
        items(engine, "payout_2026-11")[("alice", "usd")],
    )
    assert (acme["carried_in_minor"], acme["amount_minor"]) == (12_000, 13_500)
    assert (default["carried_in_minor"], default["amount_minor"]) == (2_500, 4_000)
    with engine.connect() as conn:
        carried = conn.execute(sa.text("SELECT payout_item_id, into_batch_id FROM payout_item_carry")).all()
        owed = conn.execute(sa.text("SELECT batch_id, amount_minor FROM owed_again_carry")).all()
        assert [tuple(c) for c in carried] == [(failed, "payout_acme_2026-11")]
        assert [tuple(o) for o in owed] == [("payout_2026-11", 2_500)]
        assert (
            conn.execute(sa.text("SELECT status FROM payout_batch WHERE batch_id = 'payout_acme_2026-10'")).scalar()
            == "completed_with_exceptions"
        )
        checks = audit.manifest_checks(conn, NOV, BOTH)
        assert all(r.passed for program in checks.values() for r in program.values()), checks
        assert audit.reversals_are_accounted(conn, OCT, ["default"])["default"].rows[0]["owed_again_minor"] == 2_500
        assert audit.reversals_are_accounted(conn, OCT, BOTH)["acme"].rows[0]["owed_again_minor"] == 0
    assert {p: r.totals[0].carried_in_minor for p, r in built.reports.items()} == {"acme": 12_000, "default": 2_500}


def test_history_across_the_programs_of_one_affiliate(two_programs):
    engine = two_programs
    approve(engine, OCT, "ops")
    _pay_and_fail(engine, "payout_2026-10", "alice", reverse_minor=1_000)
    with engine.connect() as conn:
        entries = affiliate_history(conn, "alice")
        only_acme = affiliate_history(conn, "alice", program_id="acme")
        named = affiliate_history(conn, "alice", merchant_name="Shop")
    assert [(e.program_id, e.merchant, e.amount_minor) for e in entries] == [
        ("acme", "Acme", 12_000),
        ("default", "Sorae", 6_000),
    ]
    assert entries[1].status.startswith("Reversed by Sorae") and "by Sorae." in entries[1].reason
    assert [e.as_json()["program_id"] for e in only_acme] == ["acme"] and only_acme[0].as_json()["merchant"] == "Acme"
    assert {e.merchant for e in named} == {"Shop"}


@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)  # roles and grants: PostgreSQL only
def test_portal_role_reads_every_program_with_the_names_column_grant(two_programs):
    with two_programs.connect() as conn:  # CREATE ROLE is transactional: rolled back at the end
        conn.execute(sa.text("CREATE ROLE sorae_portal_programs NOLOGIN"))
        conn.execute(sa.text("GRANT SELECT ON affiliate_payout_history TO sorae_portal_programs"))
        conn.execute(sa.text("GRANT SELECT (program_id, name) ON program TO sorae_portal_programs"))
        conn.execute(sa.text("SET LOCAL ROLE sorae_portal_programs"))
        assert [e.merchant for e in affiliate_history(conn, "alice")] == ["Acme", "Sorae"]
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("SELECT paying_account_ref FROM program"))
        conn.rollback()
