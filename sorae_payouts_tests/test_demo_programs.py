"""`sorae-payouts demo`: three programs in one month, through Dagster runs and the sandbox, on both
databases: acme (platform account, fully funded) and cobalt (its own Stripe account) are paid; bolt
(platform account, funded by half) is refused alone with nothing sent; a second run changes nothing."""

from __future__ import annotations

import sqlalchemy as sa
from typer.testing import CliRunner

from sorae_payouts.cli.main import build_app
from sorae_payouts.ledger.database import create_ledger_engine


def _state(url: str) -> dict:
    engine = create_ledger_engine(url)
    try:
        with engine.connect() as conn:
            batches = dict(conn.execute(sa.text("SELECT program_id, status FROM payout_batch")).all())
            attempts = dict(
                conn.execute(sa.text("SELECT program_id, COUNT(*) FROM transfer_attempt GROUP BY program_id")).all()
            )
            keys = conn.execute(sa.text("SELECT idempotency_key FROM transfer_attempt")).scalars().all()
            funding = dict(
                conn.execute(sa.text("SELECT program_id, COUNT(*) FROM program_funding GROUP BY program_id")).all()
            )
            same_ids = conn.execute(
                sa.text("SELECT COUNT(DISTINCT program_id) FROM affiliate WHERE affiliate_id = 'aff_000001'")
            ).scalar_one()
    finally:
        engine.dispose()
    return {"batches": batches, "attempts": attempts, "keys": sorted(keys), "funding": funding, "same_ids": same_ids}


def test_demo_pays_two_programs_and_refuses_the_short_one_alone(ledger_url, tmp_path, monkeypatch):
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "SORAE_DEMO_COBALT_STRIPE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SORAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SORAE_DATABASE_URL", ledger_url)
    args = ["demo", "--affiliates", "12", "--commissions", "120", "--month", "2026-10"]
    first = CliRunner().invoke(build_app(), args)
    assert first.exit_code == 0, first.output
    state = _state(ledger_url)
    assert state["batches"] == {"acme": "completed", "bolt": "approved", "cobalt": "completed"}
    assert state["attempts"].get("bolt") is None and state["attempts"]["acme"] > 0 and state["attempts"]["cobalt"] > 0
    assert "funding does not cover batch payout_bolt_2026-10" in first.output
    assert set(state["funding"]) == {"acme", "bolt"}  # cobalt pays from its own balance
    assert state["same_ids"] == 3  # aff_000001 of each merchant: three records
    cobalt_keys = [k for k in state["keys"] if ":cobalt:" in k]
    acme_keys = [k for k in state["keys"] if ":acme:" in k]
    assert cobalt_keys and acme_keys and cobalt_keys[0].split(":")[2] != acme_keys[0].split(":")[2]  # two accounts
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "SORAE_DEMO_COBALT_STRIPE_KEY"):  # set by the first run,
        monkeypatch.delenv(name, raising=False)  # whose process would have ended (its sandbox has stopped)
    second = CliRunner().invoke(build_app(), args)
    assert second.exit_code == 0, second.output
    assert _state(ledger_url) == state
