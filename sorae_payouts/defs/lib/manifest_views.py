"""The whole manifest of a month as operators review it in the Dagster UI, readable at 10,000 items.

Dagster 1.13's UI renders table metadata cells as plain text; only `url` entries and markdown (inline
when short, else behind "Show Markdown") render clickable links. So item lists are markdown tables
whose transfer and account ids are dashboard links, cut into pages of PAGE_ROWS items, the items that
need a decision first. The complete manifest is also written as CSV to a stable path (one file per
manifest hash) for spreadsheets; its path and a per-page index are in the metadata.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from sorae_payouts.core.money import format_minor, to_decimal
from sorae_payouts.core.stripe_links import account_url, transfer_url
from sorae_payouts.execution.outcomes import item_outcomes
from sorae_payouts.ledger.item_states import HELD, ItemStatus
from sorae_payouts.ledger.sql import text

PAGE_ROWS = 1_000
MAX_PAGES = 20  # 20,000 items inline; bigger manifests: the CSV file (the metadata says so)
DECISION_ROWS = 1_000
# Items an operator must look at before approving or after paying, most urgent first.
DECISION_ORDER = {
    ItemStatus.BLOCKED: 0,
    ItemStatus.FAILED: 1,
    ItemStatus.PROCESSING: 2,
    HELD: 3,
    ItemStatus.CARRIED_FORWARD: 4,
}
CSV_COLUMNS = [
    "payout_item_id",
    "affiliate_id",
    "currency",
    "amount",
    "amount_minor",
    "status",
    "reason",
    "commission_count",
    "period_amount_minor",
    "carried_in_minor",
    "stripe_account_id",
    "stripe_transfer_id",
    "account_dashboard_url",
    "transfer_dashboard_url",
]


def item_reason(item: Mapping) -> str:
    return (
        item.get("carry_reason")
        or item.get("hold_reason")
        or item.get("error_code")
        or item.get("unknown_reason")
        or ""
    )


def _link(text_: str | None, url: str | None) -> str:
    return f"[{text_}]({url})" if text_ and url else (text_ or "")


def _cell(value) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def markdown_items(items: Iterable[Mapping], title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| item | affiliate | currency | amount | status | reason | account | transfer |",
        "|---:|---|---|---:|---|---|---|---|",
    ]
    for i in items:
        account = _link(i.get("stripe_account_id"), account_url(i.get("stripe_account_id"))) or "(not onboarded)"
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    i["payout_item_id"],
                    i["affiliate_id"],
                    i["currency"],
                    format_minor(i["amount_minor"], i["currency"]),
                    i["outcome"],
                    item_reason(i),
                )
            )
            + f" | {account} | "
            f"{_link(i.get('stripe_transfer_id'), transfer_url(i.get('stripe_transfer_id')))} |"
        )
    return "\n".join(lines)


def needing_decision(items: list[dict]) -> list[dict]:
    chosen = [i for i in items if i["outcome"] in DECISION_ORDER]
    return sorted(chosen, key=lambda i: (DECISION_ORDER[i["outcome"]], -i["amount_minor"], i["payout_item_id"]))


def csv_row(item: Mapping) -> dict:
    row = {k: item.get(k) for k in CSV_COLUMNS}
    row.update(
        status=item["outcome"],
        reason=item_reason(item),
        amount=str(to_decimal(item["amount_minor"], item["currency"])),
        account_dashboard_url=account_url(item.get("stripe_account_id")) or "",
        transfer_dashboard_url=transfer_url(item.get("stripe_transfer_id")) or "",
    )
    # Spreadsheets run cells starting with = + - @ as formulas: text fields get a leading quote.
    for key in ("affiliate_id", "reason", "stripe_account_id", "stripe_transfer_id"):
        value = row.get(key)
        if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            row[key] = "'" + value
    return row


def write_manifest_csv(items: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for item in items:
            writer.writerow(csv_row(item))
    partial.replace(path)  # readers never see half a file
    return path


def approvals_markdown(conn: sa.Connection, batch_id: str) -> str:
    rows = conn.execute(
        text(
            "SELECT approved_by, approved_at, manifest_hash FROM batch_approval "
            "WHERE batch_id = :b ORDER BY approved_at"
        ),
        {"b": batch_id},
    ).all()
    if not rows:
        return "no approval yet: review the items below, then `approve_batch_job` or `sorae-payouts batch approve`"
    lines = ["| approved by | at (UTC) | manifest hash |", "|---|---|---|"]
    lines += [f"| {_cell(r.approved_by)} | {str(r.approved_at)[:19]} | `{r.manifest_hash[:16]}` |" for r in rows]
    return "\n".join(lines)


def manifest_item_metadata(
    conn: sa.Connection, batch_id: str, manifest_hash: str, out_dir: Path, page_rows: int = PAGE_ROWS
) -> dict:
    """Metadata entries: decisions first, every item in pages, approvals, and the CSV file's path."""
    items = list(item_outcomes(conn, batch_id))
    decision = needing_decision(items)
    path = write_manifest_csv(items, out_dir / "manifests" / f"{batch_id}-{manifest_hash[:16]}.csv")
    meta: dict = {
        "approvals": dg.MetadataValue.md(approvals_markdown(conn, batch_id)),
        "manifest_csv": dg.MetadataValue.path(str(path.resolve())),
        "items_needing_decision": dg.MetadataValue.md(
            markdown_items(
                decision[:DECISION_ROWS],
                f"{len(decision)} items need a decision (blocked, failed, "
                f"held, carried forward with their reason)"
                + (f"; first {DECISION_ROWS} shown, all in the CSV" if len(decision) > DECISION_ROWS else ""),
            )
        ),
    }
    pages = [items[i : i + page_rows] for i in range(0, len(items), page_rows)]
    width = len(str(len(pages)))
    for number, page in enumerate(pages[:MAX_PAGES], start=1):
        title = (
            f"items {page[0]['payout_item_id']}..{page[-1]['payout_item_id']} "
            f"(page {number} of {len(pages)}, {len(items)} items in all)"
        )
        meta[f"items_page_{number:0{width}d}"] = dg.MetadataValue.md(markdown_items(page, title))
    if len(pages) > MAX_PAGES:
        meta["items_not_inline"] = dg.MetadataValue.text(
            f"{len(items) - MAX_PAGES * page_rows} more items are only in manifest_csv"
        )
    return meta


def approvals_observation(ledger, batch, program_id: str) -> dg.AssetObservation:
    """An observation of the program-month's payout_manifest partition after an approval made in Dagster."""
    with ledger.engine.connect() as conn:
        approvals = approvals_markdown(conn, batch.batch_id)
    partition = dg.MultiPartitionKey({"month": batch.period.isoformat(), "program": program_id})
    return dg.AssetObservation(
        asset_key="payout_manifest",
        partition=str(partition),
        metadata={
            "batch_status": batch.status,
            "manifest_hash": batch.manifest_hash,
            "approvals": dg.MetadataValue.md(approvals),
        },
    )
