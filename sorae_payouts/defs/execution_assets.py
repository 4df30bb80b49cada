"""The execution asset: pays an approved month through Stripe Connect."""

from datetime import datetime, timezone

import dagster as dg

from sorae_payouts.defs import metadata as md
from sorae_payouts.defs.manifest_views import MAX_PAGES, PAGE_ROWS, markdown_items
from sorae_payouts.defs.assets import GROUP, payout_manifest
from sorae_payouts.defs.partitions import monthly_partitions
from sorae_payouts.defs.resources import LedgerResource, StripeResource
from sorae_payouts.execution.anomalies import list_anomalies
from sorae_payouts.execution.executor import ExecutionRefused, execute_batch
from sorae_payouts.execution.outcomes import item_outcomes
from sorae_payouts.operations.negative_balances import recover_negative_balances
from sorae_payouts.periods import parse_period
from sorae_payouts.stripe_gateway import dashboard_url
from sorae_payouts.stripe_gateway.gateway import GatewayConfigurationError

ITEM_TABLE_ROWS = 500


@dg.asset(
    partitions_def=monthly_partitions,
    deps=[payout_manifest],
    group_name=GROUP,
    kinds={"stripe", "python"},
    owners=["team:payments"],
    pool="stripe_api",
    # Safe because every item is idempotent on its own (claim -> call -> record): a retried step
    # resumes, it never re-sends a posted or failed attempt. Refusals are not retried (dg.Failure).
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
)
def executed_transfers(
    context: dg.AssetExecutionContext, ledger: LedgerResource, stripe: StripeResource
) -> dg.MaterializeResult:
    """The month's Stripe Connect transfers: one per payable item of the APPROVED batch.

    Before sending, the batch's transfer group is listed at Stripe once: a transfer this ledger does
    not know is adopted (it matches the item) or blocks its item (it does not); unknown outcomes of
    earlier runs are looked up there. Only pending work is sent; posted and failed attempts are never
    re-sent. A live key needs SORAE_LIVE_PAYOUTS=1 (the run logs the account, batch and totals). Each transfer's
    idempotency key is committed before Stripe is called, so re-materializing the partition (after a
    crash, a timeout or a fix) finishes the batch without ever paying an item twice. Items whose
    connected account cannot receive transfers are held and stay pending; one bad account never
    blocks the others. Refuses, sending nothing, a batch that is not approved or whose items no
    longer match the approved manifest, and a platform balance that cannot cover the batch.
    """
    period = parse_period(context.partition_key)
    gateway = stripe.gateway()
    try:
        report = execute_batch(ledger.engine, gateway, period, settings=stripe.execution_settings(),
                               announce=context.log.warning)
    except (ExecutionRefused, GatewayConfigurationError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    for anomaly in report.anomalies:
        context.log.error(str(anomaly))
    # Under the batch's frozen `recover_by_reversal` policy, negative balances are recovered now (a
    # no-op under the default `carry`); its own keys make a re-materialization safe.
    recovery = recover_negative_balances(ledger.engine, gateway, period, now=datetime.now(timezone.utc))
    if recovery.requested or recovery.failed or recovery.unknown:
        context.log.info(f"negative balance recovery: {recovery.as_json()}")
    outcome = report.outcome
    with ledger.engine.connect() as conn:
        anomalies = list_anomalies(conn, report.batch_id)
    totals = [{"currency": c, "outcome": o, "items": n, "amount": md.money(a, c), "amount_minor": a}
              for (c, o), (n, a) in sorted(outcome.totals.items())]
    with ledger.engine.connect() as conn:
        items = list(item_outcomes(conn, report.batch_id, payable_only=True))
    rows = [{"item": i["payout_item_id"], "affiliate_id": i["affiliate_id"], "currency": i["currency"],
             "amount": md.money(i["amount_minor"], i["currency"]), "amount_minor": i["amount_minor"],
             "status": i["outcome"], "transfer_id": i["stripe_transfer_id"],
             "reversed": md.money(i["reversed_minor"], i["currency"]) if i["reversed_minor"] else "",
             "reversal_pending": md.money(i["reversal_pending_minor"], i["currency"]) if i["reversal_pending_minor"] else "",
             "error_code": i["error_code"] or i["hold_reason"] or i["unknown_reason"],
             "dashboard": dashboard_url(i["stripe_transfer_id"], gateway.test_mode) if i["stripe_transfer_id"] else None}
            for i in items]
    pending = [i for i in items if i["reversal_pending_minor"]]
    attention = [i for i in items if i["outcome"] != "posted" or i["reversal_pending_minor"]]
    pages = [items[i:i + PAGE_ROWS] for i in range(0, len(items), PAGE_ROWS)]
    width = len(str(len(pages)))
    links = "\n".join(f"- [{r['transfer_id']}]({r['dashboard']}) {r['affiliate_id']} {r['amount']}"
                      for r in rows if r["transfer_id"])
    counts = ", ".join(f"{outcome.count(o)} {o}" for o in ("posted", "failed", "held", "processing", "pending",
                                                             "blocked"))
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(
            f"**{report.batch_id}** is **{outcome.status}**: {counts}. {report.sent} Stripe transfer requests "
            f"this run, {report.resolved_by_lookup} unknown outcomes resolved by lookup, {report.adopted} transfers "
            f"adopted from Stripe, {len(report.blocked)} items blocked, {len(report.anomalies)} anomalies this run "
            f"({len(anomalies)} recorded for the batch), {report.seconds:.1f} s."),
        "batch_status": outcome.status,
        "posted": outcome.count("posted"),
        "failed": outcome.count("failed"),
        "held": outcome.count("held"),
        "processing": outcome.count("processing"),
        "reversed": sum(1 for i in items if i["reversed_minor"]),
        # Reversed money waiting for an operator's decision (`sorae-payouts reversals resolve`).
        "reversal_pending": len(pending),
        "requests_sent": report.sent,
        "resolved_by_lookup": report.resolved_by_lookup,
        "adopted_from_stripe": report.adopted,
        "blocked": outcome.count("blocked"),
        "group_list_requests": report.group_list_requests,
        "anomalies": md.table([{k: a[k] for k in _ANOMALY_COLUMNS} for a in anomalies[-ITEM_TABLE_ROWS:]],
                              _ANOMALY_COLUMNS),
        "totals_by_currency_and_outcome": md.table(totals, {"currency": "string", "outcome": "string",
                                                             "items": "int", "amount": "string", "amount_minor": "int"}),
        # Links: the 1.13 UI renders table cells as plain text, markdown links are clickable.
        "items_needing_attention": dg.MetadataValue.md(markdown_items(
            attention[:PAGE_ROWS], f"{len(attention)} payable items not posted or with reversed money pending (held, failed, blocked, processing, pending, reversed)")),
        **{f"transfers_page_{n:0{width}d}": dg.MetadataValue.md(markdown_items(
            page, f"items {page[0]['payout_item_id']}..{page[-1]['payout_item_id']} (page {n} of {len(pages)}, "
                  f"{len(items)} payable items)")) for n, page in enumerate(pages[:MAX_PAGES], start=1)},
        "items": md.table(rows[:ITEM_TABLE_ROWS], _ITEM_COLUMNS),
        "stripe_transfers": dg.MetadataValue.md(links[:60_000] or "no transfers yet"),
    })


_ANOMALY_COLUMNS = {"recorded_at": "string", "kind": "string", "payout_item_id": "int",
                    "stripe_transfer_id": "string", "detail": "string"}
_ITEM_COLUMNS = {"item": "int", "affiliate_id": "string", "currency": "string", "amount": "string",
                 "amount_minor": "int", "status": "string", "transfer_id": "string", "error_code": "string",
                 "reversed": "string", "reversal_pending": "string", "dashboard": "string"}
