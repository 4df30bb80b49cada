"""Executing a program's approved batch against Stripe, through the program's paying account.

1. Refuse (nothing sent) a batch that is not approved or whose items no longer hash to the approved
   manifest, a gateway that does not hold the program's own key (`paying_accounts`), and a live key
   without SORAE_LIVE_PAYOUTS=1 (`StripeGateway.authorize_payouts`).
2. Stripe first: the program's transfer group for the month is listed once (`stripe_scan`): transfers
   this ledger does not know are adopted, resolve open attempts, or block their item. Nothing is sent
   for those items.
3. Pre-flight (`preflight`): items whose account is not ready are held with a reason (they stay
   pending); the money must be there, per currency: the program's own funding when it shares the
   platform account with another program (`funding`), else the paying account's balance; or the run
   stops before any transfer.
4. A bounded worker pool sends one transfer per item through the rate-limited gateway. Each item is
   idempotent on its own (claim -> call -> record), with a key derived from business identity
   (`identity`: paying account, program, month, affiliate, currency), so a crash, a retry of the whole
   step, a concurrent run or a rebuilt ledger never pays twice; one failing account never blocks the
   others. A transfer funded by a charge names it (`source_transaction`, chosen in the claim).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.core.periods import period_key
from sorae_payouts.execution import attempts
from sorae_payouts.execution.anomalies import Anomaly, record_anomalies
from sorae_payouts.execution.identity import transfer_group
from sorae_payouts.execution.outcomes import batch_outcome
from sorae_payouts.execution.pay_items import ExecutionReport, ExecutionRun, ExecutionSettings, utcnow
from sorae_payouts.execution.preflight import ExecutionRefused, FundingShortfall, disabled_program
from sorae_payouts.execution.sources import Sources, StripePayments, batch_sources
from sorae_payouts.execution.stripe_scan import scan_transfer_group
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.month_end.approvals import ApprovalMissing, verify_batch_approvals
from sorae_payouts.month_end.batches import load_batch, settle_batch_status
from sorae_payouts.registry import funding
from sorae_payouts.registry.account_facts import recorded_platform_account
from sorae_payouts.registry.paying_accounts import (
    PayingAccountError,
    require_live_payouts_allowed_for,
    require_program_gateway,
)
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, Program, get_program
from sorae_payouts.stripe_gateway import LivePayoutsRefused, StripeGateway

__all__ = [
    "EXECUTABLE_STATUSES",
    "ExecutionRefused",
    "ExecutionReport",
    "ExecutionSettings",
    "FundingShortfall",
    "execute_batch",
    "utcnow",
]
EXECUTABLE_STATUSES = ("approved", "executing", "partially_completed", "completed", "completed_with_exceptions")
log = logging.getLogger(__name__)


def _totals(items: list[attempts.WorkItem]) -> dict[str, tuple[int, int]]:
    totals: dict[str, tuple[int, int]] = {}
    for item in items:
        count, amount = totals.get(item.currency, (0, 0))
        totals[item.currency] = (count + 1, amount + item.amount_minor)
    return totals


def execute_batch(
    engine: sa.Engine,
    gateway: StripeGateway,
    period,
    *,
    program_id: str = DEFAULT_PROGRAM,
    settings: ExecutionSettings | None = None,
    on_item_done: Callable[[], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
    only: Callable[[attempts.WorkItem], bool] | None = None,
    announce: Callable[[str], None] | None = None,
    platform_account: str | None = None,
) -> ExecutionReport:
    """Send (or resolve) the pending and processing items of `program_id`'s batch for `period`, through
    `gateway` (built for the program's paying account: `paying_accounts.program_gateway`). `only`
    narrows the work, e.g. to the items an operator retries, or to unresolved attempts for a refresh.
    `announce` receives what a live run says before it pays (default: a warning log). `platform_account`:
    the platform key's account id (`ProgramGateways.platform_account`); default the one the ledger recorded."""
    settings = settings or ExecutionSettings()
    started = time.perf_counter()
    with engine.begin() as conn:
        program = get_program(conn, program_id)
        batch = load_batch(conn, period, program_id=program_id)
        if batch.status not in EXECUTABLE_STATUSES:
            flag = "" if program_id == DEFAULT_PROGRAM else f" --program {program_id}"
            raise ExecutionRefused(
                f"batch {batch.batch_id} is {batch.status}, not approved: review it and run "
                f"`sorae-payouts batch approve {period_key(period)}{flag} --by NAME`; "
                "nothing was sent"
            )
        try:  # the status alone proves nothing: re-hash the items and recount the approvals, every run
            verify_batch_approvals(conn, batch)
        except ApprovalMissing as exc:
            raise ExecutionRefused(f"{exc}; nothing was sent") from exc
        items = _enabled_work(
            program, [i for i in attempts.work_items(conn, batch.batch_id) if only is None or only(i)]
        )
    report = ExecutionReport(batch.batch_id, period_key(period))
    if items:
        _authorize(gateway, program, batch.batch_id, items, report, announce)
        items = _scan(engine, gateway, batch, program_id, items, report, clock)
    items, sources = _check_sources(engine, gateway, batch, program_id, items, report, clock)
    funded = bool(items) and _spends_own_funding(engine, gateway, program, platform_account)
    run = ExecutionRun(
        engine,
        gateway,
        settings,
        batch.batch_id,
        report.period_label,
        report,
        clock,
        on_item_done,
        program_id,
        funded=funded,
        sources=sources,
    )
    sendable = run.preflight(items) if items else []
    if sendable:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE payout_batch SET status = 'executing' WHERE batch_id = :b AND status <> 'executing'"),
                {"b": batch.batch_id},
            )
        with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="transfer") as pool:
            list(pool.map(run.process, sendable))
    for anomaly in report.anomalies:  # each was recorded in the ledger when it was met
        log.warning("%s: %s", batch.batch_id, anomaly)
    with engine.begin() as conn:
        settle_batch_status(conn, batch.batch_id)
        report.outcome = batch_outcome(conn, batch.batch_id)
    report.seconds = time.perf_counter() - started
    return report


def _check_sources(
    engine, gateway: StripeGateway, batch, program_id: str, items: list[attempts.WorkItem], report, clock
) -> tuple[list[attempts.WorkItem], dict]:
    """Before money once owed elsewhere is sent, Stripe is asked whether it was paid already (`sources`):
    an item whose month's money a later month's transfer carried and paid (another ledger, or this one
    before a restore), or whose own sources (carried months, owed-again reversals) were paid, is blocked
    for an operator with the transfer that paid it, and nothing is sent for it. The later months' transfer
    groups are listed once per run (empty while the batch is the latest month's)."""
    pending = [i for i in items if i.status == ItemStatus.PENDING]
    with engine.connect() as conn:
        sources = batch_sources(conn, batch.batch_id)
    if not pending:
        return items, sources
    payments = StripePayments(gateway, program_id)
    through = period_key(clock().date())
    blocked: set[int] = set()
    for item in pending:
        why = payments.already_paid(
            item.affiliate_id,
            item.currency,
            sources.get((item.affiliate_id, item.currency), Sources()),
            period=report.period_label,
            through=max(through, report.period_label),
        )
        code = why.split(":")[0] if why else ""
        if why is not None and attempts.block(engine, item.payout_item_id, why, now=clock(), error_code=code):
            blocked.add(item.payout_item_id)
            report.blocked[item.payout_item_id] = why
            report.anomalies.append(Anomaly(code, why, item.payout_item_id))
    report.source_list_requests = len(payments.groups_scanned)
    record_anomalies(engine, batch.batch_id, [a for a in report.anomalies if a.payout_item_id in blocked], now=clock())
    return [i for i in items if i.payout_item_id not in blocked], sources


def _spends_own_funding(engine, gateway: StripeGateway, program: Program, platform_account: str | None) -> bool:
    """Whether the program pays from the shared platform balance and so may spend only its own funding
    (`funding.shares_platform_account`), decided by the account its key belongs to, not by its label."""
    account = gateway.paying_account()
    with engine.connect() as conn:
        platform = platform_account or recorded_platform_account(conn)
        if platform is None and program.pays_from_platform:
            platform = account  # the platform key itself pays this program
        return funding.shares_platform_account(conn, program, program_account=account, platform_account=platform)


def _enabled_work(program: Program, items: list[attempts.WorkItem]) -> list[attempts.WorkItem]:
    """A disabled program (a merchant paused or leaving) sends no new money: its pending items stay
    pending until it is enabled again. Attempts already sent (`processing`) are still resumed, so the
    books learn what Stripe did with them."""
    if program.status == "active":
        return items
    resumed = [i for i in items if i.status != ItemStatus.PENDING]
    if len(resumed) < len(items) and not resumed:
        raise disabled_program(program.program_id, f"its {len(items)} pending item(s) are not sent")
    return resumed


def _authorize(
    gateway: StripeGateway,
    program: Program,
    batch_id: str,
    items: list[attempts.WorkItem],
    report: ExecutionReport,
    announce,
) -> None:
    """The program's key and the live-money rule (stripe_gateway.live), before this run's first request."""
    try:
        require_program_gateway(program, gateway)
    except PayingAccountError as exc:
        raise ExecutionRefused(f"{exc}; nothing was sent") from exc
    try:
        require_live_payouts_allowed_for(program, gateway)  # names the key by its source, never the key
        report.live_announcement = gateway.authorize_payouts(batch_id, _totals(items))
    except LivePayoutsRefused as exc:
        raise ExecutionRefused(str(exc)) from exc
    if report.live_announcement:
        (announce or log.warning)(report.live_announcement)


def _scan(
    engine,
    gateway: StripeGateway,
    batch,
    program_id: str,
    items: list[attempts.WorkItem],
    report: ExecutionReport,
    clock,
) -> list[attempts.WorkItem]:
    """List the program's transfer group of the month once; return the items still to send."""
    scan = scan_transfer_group(
        engine,
        gateway,
        batch_id=batch.batch_id,
        group=transfer_group(batch.period, program_id),
        program_id=program_id,
        period_label=report.period_label,
        paying_account=gateway.paying_account(),
        now=clock(),
    )
    report.group_list_requests = scan.list_requests
    report.resolved_by_lookup += scan.resolved
    report.adopted += scan.adopted
    report.blocked.update(scan.blocked)
    report.anomalies += scan.anomalies
    record_anomalies(engine, batch.batch_id, scan.anomalies, now=clock())  # before anything else can fail
    return [i for i in items if i.payout_item_id not in scan.settled]
