"""The monthly payout assets: finalized_commissions -> payout_manifest (-> executed_transfers)."""


import time
from datetime import datetime, timezone

import dagster as dg

from sorae_payouts.defs import metadata as md
from sorae_payouts.defs.partitions import monthly_partitions, previous_month
from sorae_payouts.defs.resources import LedgerResource, PayoutSettings
from sorae_payouts.finalize import FinalizeError, finalize_period
from sorae_payouts.manifest import ManifestError, build_manifest, owed_again_lines
from sorae_payouts.operations.negative_balances import negative_balances
from sorae_payouts.periods import parse_period, period_key
from sorae_payouts.batches import manifest_preview

GROUP = "payouts"


@dg.asset(
    partitions_def=monthly_partitions,
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
    period = parse_period(context.partition_key)
    started = time.perf_counter()
    try:
        report = finalize_period(ledger.engine, period, now=datetime.now(timezone.utc),
                                 holding_days=payout_settings.holding_days)
    except FinalizeError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    ledger_seconds = round(time.perf_counter() - started, 3)
    verb = "was already finalized; nothing changed" if report.already_finalized else "finalized"
    context.log.info(f"{period_key(period)} {verb}: {report.commission_count} commissions")
    rows = [{"currency": s.currency, "commissions": s.commission_count, "gross": md.money(s.gross_minor, s.currency),
             "adjustments": md.money(s.in_period_adjustments_minor, s.currency),
             "clawbacks": md.money(s.clawbacks_minor, s.currency), "net": md.money(s.net_minor, s.currency),
             "net_minor": s.net_minor} for s in report.snapshots]
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(
            f"**{period_key(period)}** {verb} at {report.finalized_at:%Y-%m-%d %H:%M} UTC: "
            f"{report.commission_count} commissions, {report.adjustments_booked} in-period adjustments, "
            f"{report.clawbacks_booked} clawbacks booked, {report.events_waiting} events waiting for later months."),
        "already_finalized": report.already_finalized,
        "commission_count": report.commission_count,
        "adjustments_booked": report.adjustments_booked,
        "clawbacks_booked": report.clawbacks_booked,
        "totals_by_currency": md.table(rows, {"currency": "string", "commissions": "int", "gross": "string",
                                              "adjustments": "string", "clawbacks": "string", "net": "string",
                                              "net_minor": "int"}),
        "ledger": ledger.display_url,
        "ledger_seconds": ledger_seconds,
    })


@dg.asset(
    partitions_def=monthly_partitions,
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
    period = parse_period(context.partition_key)
    started = time.perf_counter()
    try:
        report = build_manifest(ledger.engine, period, policy=payout_settings.policy, now=datetime.now(timezone.utc))
    except ManifestError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    ledger_seconds = round(time.perf_counter() - started, 3)
    context.log.info(f"batch {report.batch_id}: {report.outcome}, {report.item_count} items, {report.status}")
    totals = [{"currency": t.currency, "payable_items": t.pending_count,
               "payable": md.money(t.pending_minor, t.currency), "payable_minor": t.pending_minor,
               "carried_items": t.carried_count, "carried_forward": md.money(t.carried_minor, t.currency),
               "carried_forward_minor": t.carried_minor, "carried_in": md.money(t.carried_in_minor, t.currency)}
              for t in report.totals]
    with ledger.engine.connect() as conn:
        preview = manifest_preview(conn, report.batch_id, limit=50)
        owed_again = owed_again_lines(conn, report.batch_id)
        negatives = negative_balances(conn, report.batch_id)
    lines = "\n".join(f"| {r['currency']} | {r['payable_items']} | {r['payable']} | {r['carried_items']} | "
                      f"{r['carried_forward']} | {r['carried_in']} |" for r in totals)
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(
            f"**{report.batch_id}** ({report.status}, {report.outcome}): {report.item_count} items, "
            f"manifest hash `{report.manifest_hash[:16]}`\n\n"
            "| currency | payable items | payable | carried items | carried forward | carried in |\n"
            f"|---|---|---|---|---|---|\n{lines}"),
        "batch_id": report.batch_id,
        "batch_status": report.status,
        "outcome": report.outcome,
        "manifest_hash": report.manifest_hash,
        "item_count": report.item_count,
        "ledger_seconds": ledger_seconds,
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
        "items_preview": md.table(preview, {"affiliate_id": "string", "currency": "string", "amount": "string",
                                            "amount_minor": "int", "status": "string", "carry_reason": "string",
                                            "stripe_account_id": "string"}),
    })
