"""Metadata of one program-month's finalized_commissions and payout_manifest materializations.

A run of ONE program-month shows the whole manifest (items needing a decision, every item in pages,
approvals, the CSV), as before programs. A run over many program-months keeps each partition's
metadata small (totals, hash, status; the CSV path while the run has at most CSV_PARTITIONS_MAX
partitions): 1,000 programs' item pages would put hundreds of megabytes into the event log.
Re-materializing one partition alone (an unchanged draft is kept) shows its full pages.
"""

from __future__ import annotations

import dagster as dg

from sorae_payouts.aftercare.recovery import negative_balances
from sorae_payouts.core.periods import period_key
from sorae_payouts.defs.lib import metadata as md
from sorae_payouts.defs.lib.manifest_views import manifest_item_metadata, write_manifest_csv
from sorae_payouts.execution.outcomes import item_outcomes
from sorae_payouts.ledger.database import data_dir
from sorae_payouts.month_end.batches import load_batch, manifest_preview
from sorae_payouts.month_end.manifest import owed_again_lines

CSV_PARTITIONS_MAX = 50


def finalize_metadata(report, program_id: str, set_seconds: float, set_size: int) -> dict:
    verb = "was already finalized; nothing changed" if report.already_finalized else "finalized"
    rows = [
        {
            "currency": s.currency,
            "commissions": s.commission_count,
            "gross": md.money(s.gross_minor, s.currency),
            "adjustments": md.money(s.in_period_adjustments_minor, s.currency),
            "clawbacks": md.money(s.clawbacks_minor, s.currency),
            "net": md.money(s.net_minor, s.currency),
            "net_minor": s.net_minor,
        }
        for s in report.snapshots
    ]
    return {
        "summary": dg.MetadataValue.md(
            f"**{period_key(report.period)}** of program **{program_id}** {verb} at "
            f"{report.finalized_at:%Y-%m-%d %H:%M} UTC: {report.commission_count} commissions, "
            f"{report.adjustments_booked} in-period adjustments, {report.clawbacks_booked} clawbacks booked, "
            f"{report.events_waiting} events waiting for later months."
        ),
        "program": program_id,
        "already_finalized": report.already_finalized,
        "commission_count": report.commission_count,
        "adjustments_booked": report.adjustments_booked,
        "clawbacks_booked": report.clawbacks_booked,
        "totals_by_currency": md.table(
            rows,
            {
                "currency": "string",
                "commissions": "int",
                "gross": "string",
                "adjustments": "string",
                "clawbacks": "string",
                "net": "string",
                "net_minor": "int",
            },
        ),
        # The set call finalized `set_size` programs of the month at once, in `set_seconds`.
        "ledger_seconds": set_seconds,
        "programs_in_set": set_size,
    }


def _totals(report) -> list[dict]:
    return [
        {
            "currency": t.currency,
            "payable_items": t.pending_count,
            "payable": md.money(t.pending_minor, t.currency),
            "payable_minor": t.pending_minor,
            "carried_items": t.carried_count,
            "carried_forward": md.money(t.carried_minor, t.currency),
            "carried_forward_minor": t.carried_minor,
            "carried_in": md.money(t.carried_in_minor, t.currency),
        }
        for t in report.totals
    ]


def _totals_table(totals: list[dict]):
    return md.table(
        totals,
        {k: ("int" if k.endswith(("_minor", "_items")) else "string") for k in totals[0]}
        if totals
        else {"currency": "string"},
    )


def manifest_metadata(report, program_id: str, set_seconds: float, set_size: int) -> dict:
    """Small, per partition: what a run over many programs records for each."""
    totals = _totals(report)
    lines = "\n".join(
        f"| {r['currency']} | {r['payable_items']} | {r['payable']} | {r['carried_items']} | "
        f"{r['carried_forward']} | {r['carried_in']} |"
        for r in totals
    )
    return {
        "summary": dg.MetadataValue.md(
            f"**{report.batch_id}** ({report.status}, {report.outcome}): {report.item_count} items, "
            f"manifest hash `{report.manifest_hash[:16]}`\n\n"
            "| currency | payable items | payable | carried items | carried forward | carried in |\n"
            f"|---|---|---|---|---|---|\n{lines}"
        ),
        "program": program_id,
        "batch_id": report.batch_id,
        "batch_status": report.status,
        "outcome": report.outcome,
        "manifest_hash": report.manifest_hash,
        "item_count": report.item_count,
        "totals_by_currency": _totals_table(totals),
        "ledger_seconds": set_seconds,
        "programs_in_set": set_size,
    }


def with_manifest_csv(ledger, report, meta: dict) -> dict:
    """`meta` plus the complete manifest as CSV (one file per batch and hash)."""
    with ledger.engine.connect() as conn:
        path = write_manifest_csv(
            list(item_outcomes(conn, report.batch_id)),
            data_dir() / "manifests" / f"{report.batch_id}-{report.manifest_hash[:16]}.csv",
        )
    return {**meta, "manifest_csv": dg.MetadataValue.path(str(path.resolve()))}


def full_manifest_metadata(ledger, report, program_id: str, meta: dict) -> dict:
    """One program-month: totals, hash, approvals, the items needing a decision, every item in pages,
    the CSV, reversed money owed again, negative balances and the largest items."""
    with ledger.engine.connect() as conn:
        preview = manifest_preview(conn, report.batch_id, limit=50)
        owed_again = owed_again_lines(conn, report.batch_id)
        negatives = negative_balances(conn, report.batch_id)
        views = manifest_item_metadata(conn, report.batch_id, report.manifest_hash, data_dir())
        frozen = load_batch(conn, report.period, program_id=program_id).policy
    return {
        "summary": meta["summary"],
        # What a reviewer needs first: approvals so far, the items needing a decision, the whole file.
        **{k: v for k, v in views.items() if not k.startswith(("items_page", "items_not_inline"))},
        **{k: v for k, v in meta.items() if k != "summary"},
        # Reversed money owed again and carried in: one line each, saying why (operators' decisions).
        "owed_again_carried_in": md.table(
            [{**r, "amount": md.money(r["amount_minor"], r["currency"])} for r in owed_again[:500]],
            {
                "affiliate_id": "string",
                "currency": "string",
                "amount": "string",
                "amount_minor": "int",
                "reversed_item": "int",
                "why": "string",
            },
        ),
        # Affiliates in negative balance: amount and age (months carried negative, this one included).
        "negative_balance_policy": frozen.get("negative_balance", "carry"),
        "negative_balances": md.table(
            [{**r, "amount": md.money(r["amount_minor"], r["currency"])} for r in negatives[:500]],
            {
                "affiliate_id": "string",
                "currency": "string",
                "amount": "string",
                "amount_minor": "int",
                "months_carried": "int",
                "since": "string",
            },
        ),
        # The largest items at a glance (ids are in the linked pages: table cells are plain text in the UI).
        "largest_items": md.table(
            preview,
            {
                "affiliate_id": "string",
                "currency": "string",
                "amount": "string",
                "amount_minor": "int",
                "status": "string",
                "carry_reason": "string",
            },
        ),
        **{k: v for k, v in views.items() if k.startswith(("items_page", "items_not_inline"))},
    }
