"""Affiliate payout history (view `affiliate_payout_history`, `sorae_payouts.portal.history`, the CLI) on both
backends: only the asked affiliate's rows, the commission breakdown, and the affiliate-facing wording."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import typer
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from sorae_payouts.cli.history_cmd import history
from sorae_payouts.ledger import schema
from sorae_payouts.ledger.database import MIGRATIONS_DIR, upgrade
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts.portal.history import GENERIC_FAILURE, affiliate_history
from sorae_payouts_tests.factory import (
    NOV,
    NOW,
    OCT,
    add_affiliate,
    add_commission,
    add_event,
    approve,
    build_manifest,
    finalize_period,
)

POLICY = PayoutPolicy.from_major({"usd": "50.00"})
DEC_NOW = datetime(2026, 12, 20, tzinfo=UTC)
VIEW_COLUMNS = {
    "payout_item_id",
    "affiliate_id",
    "period",
    "batch_id",
    "currency",
    "commission_count",
    "earned_minor",
    "carried_in_minor",
    "amount_minor",
    "item_status",
    "carry_reason",
    "hold_reason",
    "minimum_minor",
    "attempt_number",
    "attempt_state",
    "stripe_transfer_id",
    "error_code",
    "gross_minor",
    "in_period_adjustments_minor",
    "clawbacks_minor",
    # revision 0009
    "reversed_minor",
    "reversed_at",
    "owed_again_minor",
    "written_off_minor",
    "reversal_pending_minor",
    "owed_again_in_period",
    "next_batch_period",
    "outstanding_minor",
    # revision 0012
    "program_id",
}
# Internal text stored on attempts: must never reach an affiliate.
SECRET_MESSAGE = "Idempotency key ik_ledger42_7_1 reused; request req_SECRET123"


def _item_id(conn, batch_id: str, affiliate_id: str) -> int:
    return conn.execute(
        sa.text("SELECT payout_item_id FROM payout_item WHERE batch_id = :b AND affiliate_id = :a"),
        {"b": batch_id, "a": affiliate_id},
    ).scalar_one()


def _set(conn, batch_id: str, affiliate_id: str, status: str, hold: str | None = None) -> int:
    """Move a pending item to `status` along the state machine's own path (the database refuses shortcuts)."""
    item_id = _item_id(conn, batch_id, affiliate_id)
    path = ["processing", status] if status in ("posted", "failed") else [status]
    for step in path:
        conn.execute(
            sa.text("UPDATE payout_item SET status = :s, hold_reason = :h WHERE payout_item_id = :i"),
            {"s": step, "h": hold, "i": item_id},
        )
    return item_id


def _attempt(conn, item_id: int, number: int, state: str, amount: int, **columns) -> None:
    conn.execute(
        schema.transfer_attempt.insert().values(
            payout_item_id=item_id,
            attempt_number=number,
            idempotency_key=f"ik_ledger42_{item_id}_{number}",
            state=state,
            amount_minor=amount,
            currency="usd",
            destination="acct_x",
            stripe_request_id="req_SECRET123",
            created_at=NOW,
            updated_at=NOW,
            **columns,
        )
    )


def _scenario(engine) -> None:
    """October paid out with every outcome, then November with a clawback of an October order."""
    for aff in ("aff_1", "aff_2", "aff_small", "aff_held", "aff_short", "aff_sending", "aff_sched", "aff_odd"):
        add_affiliate(engine, aff)
    add_affiliate(engine, "aff_new", account=None)
    add_commission(engine, "aff_1", 10_000)
    late = add_commission(engine, "aff_1", 5_000)
    partial = add_commission(engine, "aff_1", 3_000)
    add_event(engine, partial, "partial_reversal", 1_000)  # October event: in-period adjustment
    add_commission(engine, "aff_2", 77_777)
    add_commission(engine, "aff_small", 1_200)
    add_commission(engine, "aff_new", 9_000)
    for aff in ("aff_held", "aff_short", "aff_sending", "aff_sched", "aff_odd"):
        add_commission(engine, aff, 6_000)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    build_manifest(engine, OCT, policy=POLICY, now=NOW)
    approve(engine, OCT, "ops", "ops-second")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE payout_batch SET status = 'executing' WHERE batch_id = 'payout_2026-10'"))
        b = "payout_2026-10"
        paid = _set(conn, b, "aff_1", "posted")
        _attempt(conn, paid, 1, "failed", 17_000, error_code="balance_insufficient", error_message=SECRET_MESSAGE)
        _attempt(conn, paid, 2, "posted", 17_000, stripe_transfer_id="tr_PAID1")
        failed = _set(conn, b, "aff_2", "failed")
        _attempt(conn, failed, 1, "failed", 77_777, error_code="account_invalid", error_message=SECRET_MESSAGE)
        odd = _set(conn, b, "aff_odd", "failed")
        _attempt(conn, odd, 1, "failed", 6_000, error_code="weird_new_code", error_message=SECRET_MESSAGE)
        _set(conn, b, "aff_held", "pending", "transfers capability is inactive")
        short = _set(conn, b, "aff_short", "pending", "balance_insufficient: will be retried with a new attempt")
        _attempt(conn, short, 1, "failed", 6_000, error_code="balance_insufficient", error_message=SECRET_MESSAGE)
        sending = _set(conn, b, "aff_sending", "processing")
        # Outcome not recorded yet: a transfer id is only shown once the payment is recorded as paid.
        _attempt(conn, sending, 1, "processing", 6_000, unknown_reason=SECRET_MESSAGE, stripe_transfer_id="tr_NOT_YET")
    # November: aff_1's October order is reversed (a clawback booked in November) and 20.00 earned.
    add_event(engine, late, "reversal", occurred_at=datetime(2026, 11, 10, tzinfo=UTC))
    add_commission(engine, "aff_1", 2_000, earned_at=datetime(2026, 11, 12, tzinfo=UTC))
    finalize_period(engine, NOV, now=DEC_NOW, holding_days=3)
    build_manifest(engine, NOV, policy=POLICY, now=DEC_NOW)


def _history(engine, affiliate_id: str):
    with engine.connect() as conn:
        return affiliate_history(conn, affiliate_id)


def test_breakdown_clawback_and_newest_first(engine):
    _scenario(engine)
    nov, oct_ = _history(engine, "aff_1")
    assert [e.as_json()["period"] for e in (nov, oct_)] == ["2026-11", "2026-10"]
    assert (
        oct_.commission_count,
        oct_.gross_minor,
        oct_.in_period_adjustments_minor,
        oct_.clawbacks_minor,
        oct_.earned_minor,
        oct_.carried_in_minor,
        oct_.amount_minor,
    ) == (3, 18_000, -1_000, 0, 17_000, 0, 17_000)
    assert (
        nov.commission_count,
        nov.gross_minor,
        nov.in_period_adjustments_minor,
        nov.clawbacks_minor,
        nov.earned_minor,
        nov.amount_minor,
    ) == (1, 2_000, 0, -5_000, -3_000, -3_000)
    data = oct_.as_json()
    assert data["breakdown"] == {
        "commission_count": 3,
        "gross_minor": 18_000,
        "gross": "180.00 usd",
        "in_period_adjustments_minor": -1_000,
        "in_period_adjustments": "-10.00 usd",
        "clawbacks_minor": 0,
        "clawbacks": "0.00 usd",
    }
    assert (data["amount_minor"], data["amount"], data["earned"]) == (17_000, "170.00 usd", "170.00 usd")
    # The latest attempt decides: attempt 1 failed, attempt 2 paid.
    assert (oct_.status, oct_.status_code, oct_.transfer_id, oct_.reason) == ("Paid", "paid", "tr_PAID1", None)
    assert nov.status == "Carried to next month" and nov.transfer_id is None
    assert "reversed" in nov.reason and "-30.00 usd" in nov.reason
    small_nov, _ = _history(engine, "aff_small")
    assert (small_nov.carried_in_minor, small_nov.earned_minor, small_nov.amount_minor) == (1_200, 0, 1_200)


def test_breakdown_adds_up_for_every_row_of_the_view(engine):
    _scenario(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM affiliate_payout_history")).mappings().all()
        items = conn.execute(sa.text("SELECT COUNT(*) FROM payout_item")).scalar_one()
    assert len(rows) == items == 12  # 9 in October, 3 in November
    for row in rows:
        assert row["earned_minor"] == row["gross_minor"] + row["in_period_adjustments_minor"] + row["clawbacks_minor"]
        assert row["minimum_minor"] == 5_000


def test_only_the_asked_affiliates_rows(engine):
    _scenario(engine)
    mine = json.dumps([e.as_json() for e in _history(engine, "aff_1")])
    assert "77777" not in mine and "777.77" not in mine and "aff_2" not in mine
    [theirs] = _history(engine, "aff_2")
    assert theirs.amount_minor == 77_777
    assert _history(engine, "aff_1' OR '1'='1") == []
    assert _history(engine, "nobody") == []


@pytest.mark.parametrize(
    "affiliate, status, words",
    [
        (
            "aff_2",
            "Payment failed",
            "Payment failed: your payout account could not accept this payment; we will retry "
            "automatically once the details of your payout account are corrected. "
            "Amount outstanding: 777.77 usd.",
        ),
        (
            "aff_small",
            "Carried to 2026-11",
            "Your balance of 12.00 usd is below the 50.00 usd minimum payout; it carries to next month.",
        ),
        ("aff_new", "Carried to 2026-11", "Connect your payout account to receive payments"),
        ("aff_held", "On hold", "not yet set up to receive transfers"),
        ("aff_short", "On hold", "temporary delay on our side"),
        ("aff_sending", "Sending", "on its way"),
        ("aff_sched", "Scheduled", "scheduled to be sent"),
        ("aff_odd", "Payment failed", GENERIC_FAILURE),
    ],
)
def test_status_wording(engine, affiliate, status, words):
    _scenario(engine)
    entry = [e for e in _history(engine, affiliate) if e.as_json()["period"] == "2026-10"][0]
    assert entry.status == status
    assert words in entry.reason
    assert entry.transfer_id is None
    dumped = json.dumps(entry.as_json())
    for internal in ("ik_ledger42", "req_SECRET", "Idempotency", "weird_new_code", "capability is inactive", "acct_"):
        assert internal not in dumped


def _cli():
    app = typer.Typer()
    app.command()(history)
    return app


def test_cli_json_and_table(engine, ledger_url, monkeypatch):
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    _scenario(engine)
    runner = CliRunner()
    result = runner.invoke(_cli(), ["aff_1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["period"] for d in data] == ["2026-11", "2026-10"]
    assert (data[1]["status"], data[1]["transfer_id"], data[1]["amount"]) == ("Paid", "tr_PAID1", "170.00 usd")
    assert data[0]["breakdown"]["clawbacks_minor"] == -5_000
    table = runner.invoke(_cli(), ["aff_1"])
    assert table.exit_code == 0, table.output
    assert "Paid" in table.output and "tr_PAID1" in table.output and "2026-11" in table.output
    unknown = runner.invoke(_cli(), ["nobody", "--json"])
    assert unknown.exit_code == 0 and json.loads(unknown.output) == []
    said = runner.invoke(_cli(), ["nobody"])
    assert said.exit_code == 0 and "No payout history for affiliate nobody" in said.output


def test_view_exists_is_read_only_and_ignored_by_schema_comparison(engine):
    _scenario(engine)
    inspector = sa.inspect(engine)
    assert "affiliate_payout_history" in inspector.get_view_names()
    assert "affiliate_payout_history" not in inspector.get_table_names()
    assert {c["name"] for c in inspector.get_columns("affiliate_payout_history")} == VIEW_COLUMNS
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
        with pytest.raises(sa.exc.DBAPIError):
            conn.execute(sa.text("UPDATE affiliate_payout_history SET amount_minor = 0"))


def test_programs_revision_refuses_downgrade_and_keeps_the_view(engine):
    """0012 cannot be downgraded (every row belongs to a program): the refusal leaves the view as it was."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with pytest.raises(RuntimeError, match="cannot be downgraded"), engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    assert {c["name"] for c in sa.inspect(engine).get_columns("affiliate_payout_history")} == VIEW_COLUMNS


def test_upgrade_from_before_the_view_creates_it(tmp_path):
    from sorae_payouts.ledger.database import create_ledger_engine

    fresh = create_ledger_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    upgrade(fresh, "0003")
    assert "affiliate_payout_history" not in sa.inspect(fresh).get_view_names()
    upgrade(fresh)
    assert {c["name"] for c in sa.inspect(fresh).get_columns("affiliate_payout_history")} == VIEW_COLUMNS
    fresh.dispose()


@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)  # roles and grants: PostgreSQL only
def test_portal_role_with_select_on_the_view_only(engine):
    _scenario(engine)
    with engine.connect() as conn:  # CREATE ROLE is transactional: rolled back at the end
        conn.execute(sa.text("CREATE ROLE sorae_portal_test NOLOGIN"))
        conn.execute(sa.text("GRANT SELECT ON affiliate_payout_history TO sorae_portal_test"))
        conn.execute(sa.text("SET LOCAL ROLE sorae_portal_test"))
        [entry] = [e for e in affiliate_history(conn, "aff_2")]
        assert entry.amount_minor == 77_777
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("SELECT amount_minor FROM payout_item"))
        conn.rollback()
