"""Metadata of one program-month's executed_transfers materialization.

One program-month in the run: every payable item in pages with dashboard links, as before programs.
Several: the counts, totals and the items needing attention (first ATTENTION_ROWS_MANY) per partition.
"""

from __future__ import annotations

import dagster as dg

from sorae_payouts.defs.lib import metadata as md
from sorae_payouts.defs.lib.manifest_views import MAX_PAGES, PAGE_ROWS, markdown_items
from sorae_payouts.execution.anomalies import list_anomalies
from sorae_payouts.execution.outcomes import item_outcomes
from sorae_payouts.ledger.item_states import HELD, ItemStatus
from sorae_payouts.stripe_gateway import dashboard_url

ITEM_TABLE_ROWS = 500
ATTENTION_ROWS_MANY = 100
_ANOMALY_COLUMNS = {
    "recorded_at": "string",
    "kind": "string",
    "payout_item_id": "int",
    "stripe_transfer_id": "string",
    "detail": "string",
}
_ITEM_COLUMNS = {
    "item": "int",
    "affiliate_id": "string",
    "currency": "string",
    "amount": "string",
    "amount_minor": "int",
    "status": "string",
    "transfer_id": "string",
    "error_code": "string",
    "reversed": "string",
    "reversal_pending": "string",
    "dashboard": "string",
}
_OUTCOMES = (ItemStatus.POSTED, ItemStatus.FAILED, HELD, ItemStatus.PROCESSING, ItemStatus.PENDING, ItemStatus.BLOCKED)


def execution_metadata(conn, report, program_id: str, paying_account: str, test_mode: bool, *, full: bool) -> dict:
    outcome = report.outcome
    anomalies = list_anomalies(conn, report.batch_id)
    items = list(item_outcomes(conn, report.batch_id, payable_only=True))
    totals = [
        {"currency": c, "outcome": o, "items": n, "amount": md.money(a, c), "amount_minor": a}
        for (c, o), (n, a) in sorted(outcome.totals.items())
    ]
    pending = [i for i in items if i["reversal_pending_minor"]]
    attention = [i for i in items if i["outcome"] != ItemStatus.POSTED or i["reversal_pending_minor"]]
    shown = attention[: PAGE_ROWS if full else ATTENTION_ROWS_MANY]
    counts = ", ".join(f"{outcome.count(o)} {o}" for o in _OUTCOMES)
    meta = {
        "summary": dg.MetadataValue.md(
            f"**{report.batch_id}** (program **{program_id}**, paid from `{paying_account}`) is "
            f"**{outcome.status}**: {counts}. {report.sent} Stripe transfer requests this run, "
            f"{report.resolved_by_lookup} unknown outcomes resolved by lookup, {report.adopted} transfers adopted "
            f"from Stripe, {len(report.blocked)} items blocked, {len(report.anomalies)} anomalies this run "
            f"({len(anomalies)} recorded for the batch), {report.seconds:.1f} s."
        ),
        "program": program_id,
        "paying_account": paying_account,
        "batch_status": outcome.status,
        **{str(o): outcome.count(o) for o in (ItemStatus.POSTED, ItemStatus.FAILED, HELD, ItemStatus.PROCESSING)},
        "reversed": sum(1 for i in items if i["reversed_minor"]),
        # Reversed money waiting for an operator's decision (`sorae-payouts reversals resolve`).
        "reversal_pending": len(pending),
        "requests_sent": report.sent,
        "resolved_by_lookup": report.resolved_by_lookup,
        "adopted_from_stripe": report.adopted,
        str(ItemStatus.BLOCKED): outcome.count(ItemStatus.BLOCKED),
        "group_list_requests": report.group_list_requests,
        "anomalies": md.table(
            [{k: a[k] for k in _ANOMALY_COLUMNS} for a in anomalies[-ITEM_TABLE_ROWS:]], _ANOMALY_COLUMNS
        ),
        "totals_by_currency_and_outcome": md.table(
            totals,
            {"currency": "string", "outcome": "string", "items": "int", "amount": "string", "amount_minor": "int"},
        ),
        # Links: the 1.13 UI renders table cells as plain text, markdown links are clickable.
        "items_needing_attention": dg.MetadataValue.md(
            markdown_items(
                shown,
                f"{len(attention)} payable items not posted or with reversed money pending (held, failed, "
                f"blocked, processing, pending, reversed)"
                + ("" if len(shown) == len(attention) else f"; first {len(shown)} shown"),
            )
        ),
    }
    if full:
        meta.update(_pages(items, test_mode))
    return meta


def _pages(items: list[dict], test_mode: bool) -> dict:
    rows = [
        {
            "item": i["payout_item_id"],
            "affiliate_id": i["affiliate_id"],
            "currency": i["currency"],
            "amount": md.money(i["amount_minor"], i["currency"]),
            "amount_minor": i["amount_minor"],
            "status": i["outcome"],
            "transfer_id": i["stripe_transfer_id"],
            "reversed": md.money(i["reversed_minor"], i["currency"]) if i["reversed_minor"] else "",
            "reversal_pending": md.money(i["reversal_pending_minor"], i["currency"])
            if i["reversal_pending_minor"]
            else "",
            "error_code": i["error_code"] or i["hold_reason"] or i["unknown_reason"],
            "dashboard": dashboard_url(i["stripe_transfer_id"], test_mode) if i["stripe_transfer_id"] else None,
        }
        for i in items
    ]
    pages = [items[i : i + PAGE_ROWS] for i in range(0, len(items), PAGE_ROWS)]
    width = len(str(len(pages)))
    links = "\n".join(
        f"- [{r['transfer_id']}]({r['dashboard']}) {r['affiliate_id']} {r['amount']}" for r in rows if r["transfer_id"]
    )
    return {
        **{
            f"transfers_page_{n:0{width}d}": dg.MetadataValue.md(
                markdown_items(
                    page,
                    f"items {page[0]['payout_item_id']}..{page[-1]['payout_item_id']} (page {n} of {len(pages)}, "
                    f"{len(items)} payable items)",
                )
            )
            for n, page in enumerate(pages[:MAX_PAGES], start=1)
        },
        "items": md.table(rows[:ITEM_TABLE_ROWS], _ITEM_COLUMNS),
        "stripe_transfers": dg.MetadataValue.md(links[:60_000] or "no transfers yet"),
    }
