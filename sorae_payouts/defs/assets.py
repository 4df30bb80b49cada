"""The monthly payout assets: finalized_commissions -> payout_manifest (-> executed_transfers).

Backfill policy: single run. A backfill over a range of months (UI, `dagster asset materialize
--partition-range`) is ONE run whose steps walk the months oldest first, because each month builds on
the previous one (carried balances, clawbacks). Before the first step writes, the whole request is
checked against the ledger's ordering rules (`month_order`), and refused with the months to run, in
order, if it would stop half-way.
"""

import time
from datetime import datetime, timezone

import dagster as dg

from sorae_payouts.defs import metadata as md
from sorae_payouts.defs.manifest_views import manifest_item_metadata, write_manifest_csv
from sorae_payouts.execution.outcomes import item_outcomes
from sorae_payouts.defs.partitions import monthly_partitions, previous_month
from sorae_payouts.defs.resources import LedgerResource, PayoutSettings
from sorae_payouts.finalize import FinalizeError, finalize_period
from sorae_payouts.manifest import ManifestError, build_manifest, owed_again_lines
from sorae_payouts.operations.negative_balances import negative_balances
from sorae_payouts.ledger.database import data_dir
from sorae_payouts.month_order import MonthOrderError, check_month_end_order
from sorae_payouts.periods import parse_period, period_key
from sorae_payouts.batches import manifest_preview

GROUP = "payouts"
MONTHLY_BACKFILL = dg.BackfillPolicy.single_run()


def requested_months(context: dg.AssetExecutionContext) -> list:
    """The run's months, oldest first: one partition, or a backfill range."""
    return sorted(parse_period(key) for key in context.partition_keys)


def refuse_out_of_order(ledger: LedgerResource, months: list) -> None:
    """Raise before anything is written when the months cannot be closed now, in this order."""
    with ledger.engine.connect() as conn:
        try:
            check_month_end_order(conn, months)
        except MonthOrderError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc


@dg.asset(
    partitions_def=monthly_partitions,
    backfill_policy=MONTHLY_BACKFILL,
    deps=[dg.AssetDep("finalized_commissions", partition_mapping=previous_month)],
    group_name=GROUP,
    kinds={"python", "sql"},
    owners=["team:payments"],
    code_version="1",
)
def finalized_commissions(
    context: dg.AssetExecutionContext, ledger: LedgerResource, payout_settings: PayoutSettings
) -> dg.MaterializeResult:
    """The month's affiliate commissions, adjusted by order events and locked.

    Once the month has ended and the holding window for late reversals has passed, cancellations and
    reversals are applied and the month is finalized: its commissions become immutable (enforced by
    the ledger), and events that arrive later become clawbacks netted against a later payout.
    Re-materializing a finalized month changes nothing and says so.
    """
    months = requested_months(context)
    refuse_out_of_order(ledger, months)
    started = time.perf_counter()
    reports = []
    for period in months:  # oldest first: each month's finalization needs the previous one
        try:
            reports.append(finalize_period(ledger.engine, period, now=datetime.now(timezone.utc),
                                           holding_days=payout_settings.holding_days))
        except FinalizeError as exc:
            done = ", ".join(period_key(r.period) for r in reports)
            raise dg.Failure(f"{exc}" + (f" (already finalized in this run: {done})" if done else ""),
                             allow_retries=False) from exc
    ledger_seconds = round(time.perf_counter() - started, 3)
    sentences = []
    for report in reports:
        verb = "was already finalized; nothing changed" if report.already_finalized else "finalized"
        context.log.info(f"{period_key(report.period)} {verb}: {report.commission_count} commissions")
        sentences.append(
            f"**{period_key(report.period)}** {verb} at {report.finalized_at:%Y-%m-%d %H:%M} UTC: "
            f"{report.commission_count} commissions, {report.adjustments_booked} in-period adjustments, "
            f"{report.clawbacks_booked} clawbacks booked, {report.events_waiting} events waiting for later months.")
    rows = [{"month": period_key(r.period), "currency": s.currency, "commissions": s.commission_count,
             "gross": md.money(s.gross_minor, s.currency),
             "adjustments": md.money(s.in_period_adjustments_minor, s.currency),
             "clawbacks": md.money(s.clawbacks_minor, s.currency), "net": md.money(s.net_minor, s.currency),
             "net_minor": s.net_minor} for r in reports for s in r.snapshots]
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md("\n\n".join(sentences)),
        "months": ", ".join(period_key(m) for m in months),
        "already_finalized": all(r.already_finalized for r in reports),
        "commission_count": sum(r.commission_count for r in reports),
        "adjustments_booked": sum(r.adjustments_booked for r in reports),
        "clawbacks_booked": sum(r.clawbacks_booked for r in reports),
        "totals_by_currency": md.table(rows, {"month": "string", "currency": "string", "commissions": "int",
                                              "gross": "string", "adjustments": "string", "clawbacks": "string",
                                              "net": "string", "net_minor": "int"}),
        "ledger": ledger.display_url,
        "ledger_seconds": ledger_seconds,
    })


@dg.asset(
    partitions_def=monthly_partitions,
    backfill_policy=MONTHLY_BACKFILL,
    deps=[finalized_commissions, dg.AssetDep("payout_manifest", partition_mapping=previous_month)],
    group_name=GROUP,
    kinds={"python", "sql"},
    owners=["team:payments"],
    code_version="1",
)
def payout_manifest(
    context: dg.AssetExecutionContext, ledger: LedgerResource, payout_settings: PayoutSettings
) -> dg.MaterializeResult:
    """The month's payout batch: one item per affiliate and currency, to be reviewed and approved.

    Each item is the affiliate's finalized earnings of the month plus the balance carried from the
    previous batch; amounts under the currency's minimum payout and negative balances (clawbacks)
    carry forward instead of being paid. The batch stays a rebuildable draft, identified by its
    manifest hash, until an operator approves it; after approval it is frozen.
    """
    months = requested_months(context)
    refuse_out_of_order(ledger, months)
    started = time.perf_counter()
    reports = []
    for period in months:  # oldest first: each month carries balances into the next
        try:
            reports.append(build_manifest(ledger.engine, period, policy=payout_settings.policy,
                                          now=datetime.now(timezone.utc)))
        except ManifestError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        report = reports[-1]
        context.log.info(f"batch {report.batch_id}: {report.outcome}, {report.item_count} items, {report.status}")
    ledger_seconds = round(time.perf_counter() - started, 3)
    if len(reports) == 1:
        return dg.MaterializeResult(metadata={**_manifest_metadata(ledger, reports[0], payout_settings),
                                              "ledger_seconds": ledger_seconds})
    return dg.MaterializeResult(metadata={**_range_metadata(ledger, reports), "ledger_seconds": ledger_seconds})


def _totals(report) -> list[dict]:
    return [{"currency": t.currency, "payable_items": t.pending_count,
             "payable": md.money(t.pending_minor, t.currency), "payable_minor": t.pending_minor,
             "carried_items": t.carried_count, "carried_forward": md.money(t.carried_minor, t.currency),
             "carried_forward_minor": t.carried_minor, "carried_in": md.money(t.carried_in_minor, t.currency)}
            for t in report.totals]


def _manifest_metadata(ledger: LedgerResource, report, payout_settings: PayoutSettings) -> dict:
    """One month: totals, hash, approvals, the items needing a decision, every item in pages, the CSV."""
    totals = _totals(report)
    with ledger.engine.connect() as conn:
        preview = manifest_preview(conn, report.batch_id, limit=50)
        owed_again = owed_again_lines(conn, report.batch_id)
        negatives = negative_balances(conn, report.batch_id)
        views = manifest_item_metadata(conn, report.batch_id, report.manifest_hash, data_dir())
    lines = "\n".join(f"| {r['currency']} | {r['payable_items']} | {r['payable']} | {r['carried_items']} | "
                      f"{r['carried_forward']} | {r['carried_in']} |" for r in totals)
    return {
        "summary": dg.MetadataValue.md(
            f"**{report.batch_id}** ({report.status}, {report.outcome}): {report.item_count} items, "
            f"manifest hash `{report.manifest_hash[:16]}`\n\n"
            "| currency | payable items | payable | carried items | carried forward | carried in |\n"
            f"|---|---|---|---|---|---|\n{lines}"),
        # What a reviewer needs first: approvals so far, the items needing a decision, the whole file.
        **{k: v for k, v in views.items() if not k.startswith(("items_page", "items_not_inline"))},
        "batch_id": report.batch_id,
        "batch_status": report.status,
        "outcome": report.outcome,
        "manifest_hash": report.manifest_hash,
        "item_count": report.item_count,
        "totals_by_currency": md.table(totals, {k: ("int" if k.endswith(("_minor", "_items")) else "string")
                                                for k in totals[0]} if totals else {"currency": "string"}),
        # Reversed money owed again and carried in: one line each, saying why (operators' decisions).
        "owed_again_carried_in": md.table(
            [{**r, "amount": md.money(r["amount_minor"], r["currency"])} for r in owed_again[:500]],
            {"affiliate_id": "string", "currency": "string", "amount": "string", "amount_minor": "int",
             "reversed_item": "int", "why": "string"}),
        # Affiliates in negative balance: amount and age (months carried negative, this one included).
        "negative_balance_policy": payout_settings.policy.negative_balance if report.outcome != "frozen"
        else "(frozen in the approved batch)",
        "negative_balances": md.table(
            [{**r, "amount": md.money(r["amount_minor"], r["currency"])} for r in negatives[:500]],
            {"affiliate_id": "string", "currency": "string", "amount": "string", "amount_minor": "int",
             "months_carried": "int", "since": "string"}),
        # The largest items at a glance (ids are in the linked pages: table cells are plain text in the UI).
        "largest_items": md.table(preview, {"affiliate_id": "string", "currency": "string", "amount": "string",
                                            "amount_minor": "int", "status": "string", "carry_reason": "string"}),
        **{k: v for k, v in views.items() if k.startswith(("items_page", "items_not_inline"))},
    }


def _range_metadata(ledger: LedgerResource, reports: list) -> dict:
    """A backfill range (one run): one row per month; each month's items are in its CSV file (and in
    the month's own page after a single-month run, e.g. re-materializing it: an unchanged draft is kept)."""
    rows = []
    with ledger.engine.connect() as conn:
        for r in reports:
            path = write_manifest_csv(list(item_outcomes(conn, r.batch_id)),
                                      data_dir() / "manifests" / f"{r.batch_id}-{r.manifest_hash[:16]}.csv")
            rows.append({"month": period_key(r.period), "batch_id": r.batch_id, "status": r.status,
                         "outcome": r.outcome, "items": r.item_count, "manifest_hash": r.manifest_hash[:16],
                         "manifest_csv": str(path.resolve())})
    return {
        "summary": dg.MetadataValue.md(f"{len(reports)} months built in order: " + " -> ".join(
            f"**{r['month']}** ({r['status']}, {r['items']} items, hash `{r['manifest_hash']}`)" for r in rows)),
        "batches": md.table(rows, {"month": "string", "batch_id": "string", "status": "string", "outcome": "string",
                                   "items": "int", "manifest_hash": "string", "manifest_csv": "string"}),
        "item_count": sum(r["items"] for r in rows),
    }
