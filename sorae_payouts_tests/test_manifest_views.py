"""The manifest as the UI shows it: every item exactly once across pages, the items needing a decision
first with their reason, Stripe ids as dashboard links, the whole manifest as a formula-safe CSV."""

from __future__ import annotations

import csv
import re

from sorae_payouts.core.periods import parse_period
from sorae_payouts.defs.lib.manifest_views import manifest_item_metadata
from sorae_payouts.month_end.manifest import PayoutPolicy
from sorae_payouts_tests.factory import NOW, add_affiliate, add_commission, approve, build_manifest, finalize_period

OCT = parse_period("2026-10")


def _seed(engine):
    add_affiliate(engine, "a_big")
    add_affiliate(engine, "b_small")
    add_affiliate(engine, "c_offline", account=None)
    add_affiliate(engine, "=d_formula")
    add_affiliate(engine, "e_mid")
    for name, amount in (
        ("a_big", 90_000),
        ("b_small", 100),
        ("c_offline", 70_000),
        ("=d_formula", 6_000),
        ("e_mid", 8_000),
    ):
        add_commission(engine, name, amount)
    finalize_period(engine, OCT, now=NOW, holding_days=3)
    return build_manifest(engine, OCT, policy=PayoutPolicy.from_major({"usd": "50.00"}), now=NOW)


def test_pages_hold_every_item_once_and_decisions_come_first(engine, tmp_path):
    report = _seed(engine)
    approve(engine, OCT, "Ana Ops")
    with engine.connect() as conn:
        meta = manifest_item_metadata(conn, report.batch_id, report.manifest_hash, tmp_path, page_rows=2)
    pages = [meta[k].value for k in sorted(meta) if k.startswith("items_page_")]
    assert len(pages) == 3 and "page 3 of 3, 5 items in all" in pages[2]
    rows = [line for page in pages for line in page.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == 5 and sorted(r.split("|")[2].strip() for r in rows) == [
        "=d_formula",
        "a_big",
        "b_small",
        "c_offline",
        "e_mid",
    ]
    decision = [line for line in meta["items_needing_decision"].value.splitlines() if re.match(r"^\| \d+ \|", line)]
    # carried forward: c_offline (700.00, not onboarded) before b_small (1.00, below minimum): larger first
    assert [r.split("|")[2].strip() for r in decision] == ["c_offline", "b_small"]
    assert "not_onboarded" in decision[0] and "(not onboarded)" in decision[0] and "below_minimum" in decision[1]
    assert re.search(r"\[acct_\w+\]\(https://dashboard\.stripe\.com/test/connect/accounts/acct_\w+\)", decision[1])
    assert (
        "ana ops" in meta["approvals"].value
    )  # the normalized operator identity and report.manifest_hash[:16] in meta["approvals"].value

    with open(meta["manifest_csv"].value) as handle:
        items = list(csv.DictReader(handle))
    assert len(items) == 5
    by_affiliate = {r["affiliate_id"]: r for r in items}
    assert "'=d_formula" in by_affiliate  # a spreadsheet must not run it as a formula
    assert by_affiliate["a_big"]["amount"] == "900.00" and by_affiliate["a_big"]["amount_minor"] == "90000"
    assert by_affiliate["a_big"]["account_dashboard_url"].startswith(
        "https://dashboard.stripe.com/test/connect/accounts/acct_"
    )
    assert by_affiliate["c_offline"]["account_dashboard_url"] == ""
