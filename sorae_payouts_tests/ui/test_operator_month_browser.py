"""An operator's month in the Dagster UI, checked in a real browser as a person sees it.

`sorae-payouts demo` closes and pays 2026-08 on a fresh ledger (SQLite and PostgreSQL), `dagster dev`
serves the UI, and Debian's Chromium (driven by Playwright, never a downloaded browser build) checks:
the demo's runs under their job, the lineage of the three assets, the manifest partition with all its
items and the carried ones, the executed transfers with working dashboard links, the three blocking
checks passed, and a backfill over 2026-09..2026-10 launched from the UI that completes in month order.
Partitions are program-months: the demo runs three programs (acme, bolt, cobalt); the pages checked are
acme's ("2026-08-01|acme"), and the UI backfill selects acme's September and October.
Screenshots go to test-artifacts/ui/ (gitignored). Without Chromium or Playwright the test skips and
says how to install them; under CI=true it fails instead (.ci/run installs both).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa

from sorae_payouts.ledger.database import create_ledger_engine

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = Path(os.environ.get("SORAE_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BIN = Path(sys.executable).parent
AUGUST = "2026-08-01|acme"
TRANSFER_LINK = re.compile(r"^https://dashboard\.stripe\.com/test/connect/transfers/(tr_\w+)$")
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } } }"""
BACKFILL_RUNS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { runs(limit: 100) { id } } } }"""
BACKFILLS = "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status } } } }"


def _browser_or_skip():
    reason = None
    try:
        import playwright.sync_api  # noqa: F401 (only: is it installed?)
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found (apt-get install -y chromium; .ci/run does it)"
    if reason:
        if IN_CI:
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    response.raise_for_status()
    return response.json()["data"]


def _rows(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


class Screen:
    """One browser tab on the UI: go to a page, open and close metadata dialogs, take screenshots."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base

    def open(self, path: str, wait_text: str) -> None:
        self.page.goto(self.base + path)
        self.page.get_by_text(wait_text).first.wait_for(timeout=60_000)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def markdown_dialog(self, key: str):
        """Open the "[Show Markdown]" dialog of the metadata entry `key`; returns the dialog."""
        row = self.page.locator("tr", has=self.page.get_by_text(key, exact=True)).first
        row.get_by_text("[Show Markdown]").click()
        dialog = self.page.get_by_role("dialog").last
        dialog.locator("table").first.wait_for(timeout=30_000)
        return dialog

    def close_dialog(self) -> None:
        self.page.get_by_role("dialog").last.get_by_role("button", name="Close").click()
        self.page.get_by_role("dialog").last.wait_for(state="detached", timeout=10_000)


def test_operator_month_in_the_browser(ledger_url, tmp_path):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    prefix = "postgres_" if ledger_url.startswith("postgresql") else "sqlite_"
    env = {k: v for k, v in os.environ.items() if k not in ("STRIPE_API_KEY", "STRIPE_API_BASE", "DAGSTER_HOME")}
    env.update(SORAE_DATABASE_URL=ledger_url, SORAE_DATA_DIR=str(tmp_path / "data"), SORAE_OPERATOR="browser test")
    demo = subprocess.run(
        [str(BIN / "sorae-payouts"), "demo", "--month", "2026-08", "--affiliates", "40", "--commissions", "400"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Warning" not in demo.stdout + demo.stderr  # the CLI is quiet
    engine = create_ledger_engine(ledger_url)
    items = _rows(
        engine, "SELECT status, carry_reason, stripe_account_id FROM payout_item WHERE batch_id = 'payout_acme_2026-08'"
    )
    carried = [r for r in items if r.status == "carried_forward"]
    posted_ids = {
        r[0]
        for r in _rows(
            engine,
            "SELECT a.stripe_transfer_id FROM transfer_attempt a JOIN payout_item i "
            "USING (payout_item_id) WHERE a.state = 'posted' "
            "AND i.batch_id = 'payout_acme_2026-08'",
        )
    }
    assert carried and posted_ids

    print(f"demo done after {time.monotonic() - started:.0f} s")
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path,
        env={**env, "DAGSTER_HOME": str(tmp_path / "data" / "dagster_home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "dagster dev did not start"
            time.sleep(1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            # The UI's first-visit "join the community" dialog (CommunityNux.tsx) is dismissed in storage.
            page.add_init_script("window.localStorage.setItem('communityNux', 'true')")
            screen = Screen(page, f"http://127.0.0.1:{port}")
            for step in (
                lambda: _runs_under_their_job(screen, prefix),
                lambda: _lineage(screen, prefix),
                lambda: _manifest_partition(screen, prefix, len(items), carried),
                lambda: _checks_passed(screen, prefix),
                lambda: _transfers_with_links(screen, prefix, posted_ids),
                lambda: _backfill_from_the_ui(screen, prefix, port, engine, _program_keys(tmp_path)),
            ):
                step()
                print(f"{time.monotonic() - started:.0f} s")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        log = server.communicate(timeout=60)[0]
    assert "dagster.yaml" not in log, "dagster dev warned about an instance file it does not use"


def _program_keys(tmp_path: Path) -> int:
    """How many program partition keys the demo's Dagster instance holds (one per program it ran)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "data" / "dagster_home")) as instance:
        return len(instance.get_dynamic_partitions("program"))


def _runs_under_their_job(screen: Screen, prefix: str) -> None:
    screen.open("/locations/sorae_payouts/jobs/month_end_job/runs", "sorae/operator: demo")
    body = screen.page.inner_text("body")
    assert "sorae/operator: demo" in body and "sorae/batch_id: payout_acme_2026-08" in body
    screen.shot(f"{prefix}01_month_end_job_runs")


def _lineage(screen: Screen, prefix: str) -> None:
    screen.open("/assets/payout_manifest?view=lineage", "finalized_commissions")
    graph = screen.page.inner_text("body")
    for asset in ("finalized_commissions", "payout_manifest", "executed_transfers"):
        assert asset in graph
    screen.shot(f"{prefix}02_lineage")


def _manifest_partition(screen: Screen, prefix: str, item_count: int, carried) -> None:
    screen.open(f"/assets/payout_manifest?view=partitions&partition={quote(AUGUST)}", "items_needing_decision")
    screen.shot(f"{prefix}03_manifest_partition")
    dialog = screen.markdown_dialog("items_page_1")
    assert dialog.locator("tbody tr").count() == item_count  # every item of the month, one page here
    screen.shot(f"{prefix}04_manifest_all_items")
    screen.close_dialog()
    dialog = screen.markdown_dialog("items_needing_decision")
    rows = dialog.locator("tbody tr")
    assert rows.count() == len(carried)
    text = dialog.inner_text()
    for reason in {r.carry_reason for r in carried}:
        assert reason in text
    account_links = dialog.locator("a[href^='https://dashboard.stripe.com/test/connect/accounts/acct_']")
    assert account_links.count() == sum(1 for r in carried if r.stripe_account_id)
    screen.shot(f"{prefix}05_manifest_carried_items")
    screen.close_dialog()


def _checks_passed(screen: Screen, prefix: str) -> None:
    screen.open(f"/assets/payout_manifest?view=checks&partition={quote(AUGUST)}", "money_is_conserved")
    for name in ("money_is_conserved", "finalized_rows_unchanged", "one_item_per_affiliate_currency"):
        screen.page.get_by_text(name).first.click()
        screen.page.get_by_text("This is a blocking asset check.").wait_for()
        assert "Passed" in screen.page.inner_text("body")
    assert "Failed" not in screen.page.inner_text("body")
    screen.shot(f"{prefix}06_manifest_checks")


def _transfers_with_links(screen: Screen, prefix: str, posted_ids: set[str]) -> None:
    screen.open(f"/assets/executed_transfers?view=partitions&partition={quote(AUGUST)}", "transfers_page_1")
    dialog = screen.markdown_dialog("transfers_page_1")
    links = dialog.locator("a[href*='/connect/transfers/']")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    shown = {TRANSFER_LINK.match(h).group(1) for h in hrefs if TRANSFER_LINK.match(h)}
    assert len(shown) == len(hrefs) and shown == posted_ids  # one working link per posted transfer
    screen.shot(f"{prefix}07_executed_transfers_links")
    screen.close_dialog()


def _backfill_from_the_ui(screen: Screen, prefix: str, port: int, engine, program_keys: int) -> None:
    screen.open("/locations/sorae_payouts/jobs/month_end_job/partitions", "Total partitions")
    screen.page.get_by_role("button", name="Materialize…").click()
    dialog = screen.page.get_by_role("dialog").last
    # One selector per dimension, `month` first (alphabetical), then `program` (a key picked from the
    # instance's program keys): acme's September and October = 2 partitions, one run.
    selection = dialog.locator("input[type=text]").first
    selection.fill("[2026-09-01...2026-10-01]")
    selection.press("Enter")
    assert program_keys >= 3  # the demo's programs (and `default`) are partition keys without a code change
    dialog.get_by_text("Select a partition or create one").click()
    screen.page.keyboard.type("acme")  # filters the program keys to acme; "Select all (1)" ticks it
    screen.page.get_by_text("Select all (1)", exact=True).click()
    screen.page.keyboard.press("Escape")
    dialog.get_by_text("2 partitions", exact=True).wait_for()
    screen.shot(f"{prefix}08_backfill_dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    deadline, status = time.monotonic() + 150, None
    while status not in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
        assert time.monotonic() < deadline, f"backfill still {status}"
        time.sleep(2)
        backfills = _graphql(port, BACKFILLS)["partitionBackfillsOrError"]["results"]
        status = backfills[0]["status"] if backfills else None
    assert status == "COMPLETED_SUCCESS"
    runs = _graphql(port, BACKFILL_RUNS, {"id": backfills[0]["id"]})["partitionBackfillOrError"]["runs"]
    assert len(runs) == 1  # both months in one run, oldest first
    batches = _rows(
        engine,
        "SELECT batch_id, built_at FROM payout_batch WHERE period > :p AND program_id = 'acme' ORDER BY built_at",
        p=date(2026, 8, 1),
    )
    assert [b.batch_id for b in batches] == ["payout_acme_2026-09", "payout_acme_2026-10"]  # built in month order
    carried_in = dict(_rows(engine, "SELECT batch_id, SUM(carried_in_minor) FROM payout_item GROUP BY batch_id"))
    carried_out = dict(
        _rows(
            engine,
            "SELECT batch_id, SUM(amount_minor) FROM payout_item WHERE status = 'carried_forward' GROUP BY batch_id",
        )
    )
    assert int(carried_in["payout_acme_2026-09"]) == int(carried_out["payout_acme_2026-08"])  # flowed in order
    assert int(carried_in["payout_acme_2026-10"]) == int(carried_out["payout_acme_2026-09"])
    screen.open(f"/runs/b/{backfills[0]['id']}", backfills[0]["id"])
    screen.shot(f"{prefix}09_backfill_completed")
