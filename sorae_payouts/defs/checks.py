"""Asset checks: blocking checks on the payout manifest (a failure stops execution downstream), and
the reconciliation of executed transfers with Stripe."""


import time
from collections.abc import Callable

import dagster as dg

from sorae_payouts import audit
from sorae_payouts.defs import metadata as md
from sorae_payouts.defs.assets import payout_manifest
from sorae_payouts.defs.partitions import monthly_partitions
from sorae_payouts.defs.resources import LedgerResource, StripeResource
from sorae_payouts.operations.reconcile import reconcile_batch
from sorae_payouts.periods import parse_period, period_key


def _result(result: audit.AuditResult, seconds: float) -> dg.AssetCheckResult:
    columns = {k: ("int" if isinstance(v, int) else "string") for k, v in (result.rows[0].items() if result.rows else [])}
    meta = {"summary": result.summary, "seconds": round(seconds, 3)}
    if result.rows:
        meta["rows"] = md.table(result.rows, columns)
    return dg.AssetCheckResult(passed=result.passed, metadata=meta, severity=dg.AssetCheckSeverity.ERROR)


def _run(context: dg.AssetCheckExecutionContext, ledger: LedgerResource, audit_fn: Callable) -> dg.AssetCheckResult:
    """One month, or every month of a single-run backfill range. For a range, Dagster 1.13 records the
    returned result without a partition, so each month's evaluation is also logged with its own
    partition (the UI's per-month check status); the returned result passes only if every month does."""
    started = time.perf_counter()
    months = sorted(parse_period(key) for key in context.partition_keys)
    with ledger.engine.connect() as conn:
        results = [audit_fn(conn, month) for month in months]
    if len(results) == 1:
        return _result(results[0], time.perf_counter() - started)
    [check_key] = context.selected_asset_check_keys
    for month, result in zip(months, results):
        one = _result(result, 0.0)
        context.op_execution_context.log_event(dg.AssetCheckEvaluation(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=result.passed, metadata=one.metadata,
            severity=dg.AssetCheckSeverity.ERROR, blocking=True, partition=month.isoformat()))
    combined = audit.AuditResult(
        passed=all(r.passed for r in results),
        summary="; ".join(f"{period_key(m)}: {r.summary}" for m, r in zip(months, results)),
        rows=[{"month": period_key(m), **row} for m, r in zip(months, results) for row in r.rows])
    return _result(combined, time.perf_counter() - started)


@dg.asset_check(asset=payout_manifest, blocking=True, partitions_def=monthly_partitions)
def money_is_conserved(context: dg.AssetCheckExecutionContext, ledger: LedgerResource) -> dg.AssetCheckResult:
    """Per currency, items (payable + carried forward) == finalized commissions, adjustments and
    clawbacks of the month + balances carried in from the previous batch."""
    return _run(context, ledger, audit.money_is_conserved)


@dg.asset_check(asset=payout_manifest, blocking=True, partitions_def=monthly_partitions)
def finalized_rows_unchanged(context: dg.AssetCheckExecutionContext, ledger: LedgerResource) -> dg.AssetCheckResult:
    """The month's finalized commissions and adjustments still match their finalization snapshot,
    and every item's earned amount still matches them."""
    return _run(context, ledger, audit.finalized_rows_unchanged)


@dg.asset_check(asset=payout_manifest, blocking=True, partitions_def=monthly_partitions)
def one_item_per_affiliate_currency(context: dg.AssetCheckExecutionContext, ledger: LedgerResource) -> dg.AssetCheckResult:
    """No affiliate has two payout items for one currency in the month's batch."""
    return _run(context, ledger, audit.one_item_per_affiliate_currency)


manifest_checks = [money_is_conserved, finalized_rows_unchanged, one_item_per_affiliate_currency]


@dg.asset_check(asset="executed_transfers", partitions_def=monthly_partitions)
def transfers_reconciled(
    context: dg.AssetCheckExecutionContext, ledger: LedgerResource, stripe: StripeResource
) -> dg.AssetCheckResult:
    """The batch's transfers in Stripe (transfer group) match the ledger's posted attempts: same ids,
    amounts and count, nothing in Stripe that the ledger does not know."""
    started = time.perf_counter()
    with ledger.engine.connect() as conn:
        result = reconcile_batch(conn, stripe.gateway(), parse_period(context.partition_key))
    return _result(result, time.perf_counter() - started)
