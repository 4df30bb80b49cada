"""Executing an approved batch against Stripe.

1. Refuse (nothing sent) a batch that is not approved or whose items no longer hash to the approved
   manifest, and a live key without SORAE_LIVE_PAYOUTS=1 (`StripeGateway.authorize_payouts`).
2. Stripe first: the batch's transfer group is listed once (`stripe_scan`): transfers this ledger does
   not know are adopted, resolve open attempts, or block their item. Nothing is sent for those items.
3. Pre-flight: each destination must exist and be able to receive transfers; items whose account is
   not ready are held with a reason (they stay pending). The platform's available balance must cover
   what is about to be sent, per currency, or the run stops before any transfer.
4. A bounded worker pool sends one transfer per item through the rate-limited gateway. Each item is
   idempotent on its own (claim -> call -> record), with a key derived from business identity
   (`identity`), so a crash, a retry of the whole step, a concurrent run or a rebuilt ledger never pays
   twice; one failing account never blocks the others.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from sorae_payouts.approvals import ApprovalMissing, verify_batch_approvals
from sorae_payouts.batches import load_batch
from sorae_payouts.execution import attempts as ledger
from sorae_payouts.execution.anomalies import Anomaly, record_anomalies
from sorae_payouts.execution.identity import (
    PaymentIdentity, legacy_transfer_metadata, transfer_group, transfer_metadata)
from sorae_payouts.execution.outcomes import BatchOutcome, batch_outcome, settle_batch_status
from sorae_payouts.execution.shared_destinations import shared_destination_holds
from sorae_payouts.execution.stripe_scan import after_refused_key, differences, find_transfer, scan_transfer_group
from sorae_payouts.money import format_minor
from sorae_payouts.periods import parse_period, period_key
from sorae_payouts.programs import DEFAULT_PROGRAM
from sorae_payouts.stripe_gateway import (
    Disposition, LivePayoutsRefused, StripeGateway, TransferOutcome, TransferRecord, TransferRequest)

EXECUTABLE_STATUSES = ("approved", "executing", "partially_completed", "completed", "completed_with_exceptions")
log = logging.getLogger(__name__)


class ExecutionRefused(Exception):
    """Nothing was sent: the batch may not be executed now. The message says why."""


@dataclass(frozen=True)
class ExecutionSettings:
    workers: int = 16
    same_key_attempts: int = 6  # sends of one key within a run when Stripe says "not now" (429/409)
    backoff_base_seconds: float = 0.25
    backoff_max_seconds: float = 8.0
    # Above this many destinations, page through all connected accounts (100 per request) instead of
    # one GET per destination.
    account_list_threshold: int = 100


@dataclass
class ExecutionReport:
    batch_id: str
    period_label: str
    held: dict[int, str] = field(default_factory=dict)
    blocked: dict[int, str] = field(default_factory=dict)
    sent: int = 0
    resolved_by_lookup: int = 0
    adopted: int = 0
    group_list_requests: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    live_announcement: str | None = None
    outcome: BatchOutcome | None = None
    seconds: float = 0.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _totals(items: list[ledger.WorkItem]) -> dict[str, tuple[int, int]]:
    totals: dict[str, tuple[int, int]] = {}
    for item in items:
        count, amount = totals.get(item.currency, (0, 0))
        totals[item.currency] = (count + 1, amount + item.amount_minor)
    return totals


def execute_batch(engine: sa.Engine, gateway: StripeGateway, period, *, settings: ExecutionSettings | None = None,
                  on_item_done: Callable[[], None] | None = None, clock: Callable[[], datetime] = utcnow,
                  only: Callable[[ledger.WorkItem], bool] | None = None,
                  announce: Callable[[str], None] | None = None) -> ExecutionReport:
    """Send (or resolve) the batch's pending and processing items; `only` narrows the work, e.g. to
    the items an operator retries, or to unresolved attempts for a refresh. `announce` receives what a
    live run says before it pays (default: a warning log)."""
    settings = settings or ExecutionSettings()
    started = time.perf_counter()
    with engine.begin() as conn:
        batch = load_batch(conn, period)
        if batch.status not in EXECUTABLE_STATUSES:
            raise ExecutionRefused(f"batch {batch.batch_id} is {batch.status}, not approved: review it and run "
                                   f"`sorae-payouts batch approve {period_key(period)} --by NAME`; nothing was sent")
        try:  # the status alone proves nothing: re-hash the items and recount the approvals, every run
            verify_batch_approvals(conn, batch)
        except ApprovalMissing as exc:
            raise ExecutionRefused(f"{exc}; nothing was sent") from exc
        items = [i for i in ledger.work_items(conn, batch.batch_id) if only is None or only(i)]
    report = ExecutionReport(batch.batch_id, period_key(period))
    if items:
        try:  # the live-money rule (stripe_gateway.live), before this run's first request
            report.live_announcement = gateway.authorize_payouts(batch.batch_id, _totals(items))
        except LivePayoutsRefused as exc:
            raise ExecutionRefused(str(exc)) from exc
        if report.live_announcement:
            (announce or log.warning)(report.live_announcement)
        items = _scan(engine, gateway, batch, items, report, clock)
    run = _Run(engine, gateway, settings, batch.batch_id, report.period_label, report, clock, on_item_done)
    sendable = run.preflight(items) if items else []
    if sendable:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE payout_batch SET status = 'executing' WHERE batch_id = :b "
                                 "AND status <> 'executing'"), {"b": batch.batch_id})
        with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="transfer") as pool:
            list(pool.map(run.process, sendable))
    for anomaly in report.anomalies:  # each was recorded in the ledger when it was met
        log.warning("%s: %s", batch.batch_id, anomaly)
    with engine.begin() as conn:
        settle_batch_status(conn, batch.batch_id)
        report.outcome = batch_outcome(conn, batch.batch_id)
    report.seconds = time.perf_counter() - started
    return report


def _scan(engine, gateway: StripeGateway, batch, items: list[ledger.WorkItem], report: ExecutionReport,
          clock) -> list[ledger.WorkItem]:
    """List the batch's transfer group once; return the items still to send."""
    scan = scan_transfer_group(engine, gateway, batch_id=batch.batch_id, group=transfer_group(batch.period),
                               program_id=DEFAULT_PROGRAM, period_label=report.period_label,
                               paying_account=gateway.paying_account(), now=clock())
    report.group_list_requests = scan.list_requests
    report.resolved_by_lookup += scan.resolved
    report.adopted += scan.adopted
    report.blocked.update(scan.blocked)
    report.anomalies += scan.anomalies
    record_anomalies(engine, batch.batch_id, scan.anomalies, now=clock())  # before anything else can fail
    return [i for i in items if i.payout_item_id not in scan.settled]


class _Run:
    """State shared by the worker threads of one execution."""

    def __init__(self, engine, gateway, settings, batch_id, period_label, report, clock, on_item_done,
                 program_id: str = DEFAULT_PROGRAM):
        self.engine, self.gateway, self.settings = engine, gateway, settings
        self.batch_id, self.period_label, self.program_id = batch_id, period_label, program_id
        self.group = transfer_group(parse_period(period_label), program_id)
        self.report, self.clock, self.on_item_done = report, clock, on_item_done
        self.exhausted_currencies: set[str] = set()
        self.lock = threading.Lock()

    def preflight(self, items: list[ledger.WorkItem]) -> list[ledger.WorkItem]:
        """Hold items whose account cannot receive transfers; stop on a balance shortfall."""
        with self.engine.connect() as conn:  # one account, one affiliate (unless allowed to share)
            shared = shared_destination_holds(conn, self.batch_id, items)
        pending = [i for i in items if i.status == "pending" and i.payout_item_id not in shared]
        destinations = sorted({i.destination for i in pending})
        if len(destinations) > self.settings.account_list_threshold:
            known = {a.account_id: a for a in self.gateway.all_account_readiness()}
            readiness = {d: known.get(d) or self.gateway.account_readiness(d) for d in destinations}
        else:
            with ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="preflight") as pool:
                readiness = dict(zip(destinations, pool.map(self.gateway.account_readiness, destinations)))
        holds = shared | {i.payout_item_id: readiness[i.destination].hold_reason for i in pending
                          if not readiness[i.destination].ready}
        ledger.hold(self.engine, holds, now=self.clock())
        self.report.held = holds
        # Unresolved attempts are always resumed: they may already be paid, so they never wait on readiness.
        sendable = [i for i in items if i.payout_item_id not in holds]
        needed: dict[str, int] = {}
        for item in sendable:
            if item.status == "pending":
                needed[item.currency] = needed.get(item.currency, 0) + item.amount_minor
        if needed:
            available = self.gateway.available_balance()
            short = {c: (n, available.get(c, 0)) for c, n in needed.items() if available.get(c, 0) < n}
            if short:
                detail = "; ".join(f"{c}: need {format_minor(n, c)}, available {format_minor(a, c)}"
                                   for c, (n, a) in sorted(short.items()))
                raise ExecutionRefused(f"platform balance too low for batch {self.batch_id} ({detail}); top up the "
                                       "Stripe balance and re-run; nothing was sent")
        return sendable

    def process(self, item: ledger.WorkItem) -> None:
        try:
            self._process(item)
        finally:
            if self.on_item_done:
                self.on_item_done()

    def identity(self, item: ledger.WorkItem) -> PaymentIdentity:
        return PaymentIdentity(self.program_id, self.period_label, item.affiliate_id, item.currency)

    def _anomaly(self, anomaly: Anomaly) -> None:
        """Recorded at once (rare): a run killed later still leaves it for operators."""
        record_anomalies(self.engine, self.batch_id, [anomaly], now=self.clock())
        with self.lock:
            self.report.anomalies.append(anomaly)

    def _process(self, item: ledger.WorkItem) -> None:
        if item.currency in self.exhausted_currencies and item.status == "pending":
            ledger.hold(self.engine, {item.payout_item_id: "platform balance ran out during this run"}, now=self.clock())
            return
        attempt = ledger.claim(self.engine, item, paying_account=self.gateway.paying_account(),
                               identity=self.identity(item), now=self.clock())
        if attempt is None:
            return  # claimed by a concurrent run, no longer pending, or already has a posted attempt
        # A resumed attempt (outcome unknown) was looked up at Stripe by this run's group scan, which
        # found no transfer for it: re-sending its key is safe whatever its age.
        request = self._request(item, attempt)
        for send in range(self.settings.same_key_attempts):
            outcome = self.gateway.create_transfer(request, attempt.idempotency_key)
            with self.lock:
                self.report.sent += 1
            if outcome.disposition is Disposition.RETRY_SAME_KEY:
                if outcome.error and outcome.error.should_retry_header == "false":
                    break  # Stripe says re-sending now is pointless: the next run or a refresh does it
                time.sleep(random.uniform(0, min(self.settings.backoff_max_seconds,
                                                 self.settings.backoff_base_seconds * 2 ** send)))
                continue
            note = None
            if outcome.disposition is Disposition.UNKNOWN:
                if self._resolve_by_lookup(item, attempt):
                    return
            elif outcome.disposition is Disposition.KEY_REFUSED:
                self._key_refused(item, attempt, outcome)
                return
            elif outcome.disposition is Disposition.POSTED:
                self._check_matches(attempt, outcome.transfer)
                note = self._check_replay(attempt, outcome)
            elif outcome.error and outcome.error.code == "balance_insufficient":
                self.exhausted_currencies.add(item.currency)
            ledger.record(self.engine, attempt, outcome, now=self.clock(), note=note)
            return
        ledger.record(self.engine, attempt, outcome, now=self.clock(),
                      unknown_reason=f"not accepted after {send + 1} sends "
                                     f"({outcome.error.code if outcome.error else 'unknown'}); same key next run")

    def _request(self, item: ledger.WorkItem, attempt: ledger.Attempt) -> TransferRequest:
        """The request of an attempt: always the same for the same attempt (a re-sent key must carry the
        parameters it was first sent with, or Stripe refuses it)."""
        description = f"Sorae affiliate commissions {self.period_label} ({item.affiliate_id})"
        if attempt.legacy:  # claimed before revision 0005: the metadata of that format
            metadata = legacy_transfer_metadata(attempt.idempotency_key, self.identity(item), attempt.attempt_number,
                                                item.payout_item_id, self.batch_id)
        else:
            metadata = transfer_metadata(self.identity(item), attempt.attempt_number, item.payout_item_id)
        return TransferRequest(attempt.amount_minor, attempt.currency, attempt.destination, self.group,
                               description, metadata)

    def _check_replay(self, attempt: ledger.Attempt, outcome: TransferOutcome) -> str | None:
        """A re-sent key should be replayed; a fresh key replayed means another ledger sent it first."""
        transfer = outcome.transfer
        if attempt.resumed and not outcome.replayed:
            self._anomaly(Anomaly(
                "resent_key_executed_anew", f"key {attempt.idempotency_key} of an earlier run was executed anew by "
                f"Stripe (no Idempotent-Replayed): its first send never executed or the key was pruned; the group "
                f"scan before this send found no transfer, so {transfer.transfer_id} is the only one",
                attempt.payout_item_id, attempt.attempt_pk, transfer.transfer_id))
        if not attempt.resumed and outcome.replayed:
            note = (f"adopted from Stripe: key {attempt.idempotency_key} was replayed (first sent by another "
                    f"ledger with the same parameters); transfer {transfer.transfer_id}, nothing new sent")
            self._anomaly(Anomaly("adopted_from_stripe", note, attempt.payout_item_id, attempt.attempt_pk,
                                  transfer.transfer_id))
            with self.lock:
                self.report.adopted += 1
            return note
        return None

    def _resolve_by_lookup(self, item: ledger.WorkItem, attempt: ledger.Attempt) -> bool:
        found = find_transfer(self.gateway, self.group, self.identity(item), attempt.destination,
                              attempt.attempt_number)
        if not found:
            return False
        self._check_matches(attempt, found[0])
        ledger.record(self.engine, attempt, TransferOutcome(Disposition.POSTED, found[0]), now=self.clock())
        with self.lock:
            self.report.resolved_by_lookup += 1
        return True

    def _key_refused(self, item: ledger.WorkItem, attempt: ledger.Attempt, outcome: TransferOutcome) -> None:
        """`idempotency_error`: adopt the transfer that pays the item, or block it. Never a new key."""
        adopt, kind, reason = after_refused_key(self.gateway, self.group, self.identity(item), attempt,
                                                outcome.request_id)
        if adopt is not None:
            ledger.record(self.engine, attempt, TransferOutcome(Disposition.POSTED, adopt), now=self.clock(),
                          note=reason)
            with self.lock:
                self.report.adopted += 1
        else:
            ledger.block(self.engine, item.payout_item_id, reason, now=self.clock(), attempt=attempt,
                         error_code="idempotency_error")
            with self.lock:
                self.report.blocked[item.payout_item_id] = reason
        self._anomaly(Anomaly(kind, reason, item.payout_item_id, attempt.attempt_pk,
                              adopt.transfer_id if adopt else None))

    def _check_matches(self, attempt: ledger.Attempt, transfer: TransferRecord) -> None:
        diffs = differences(transfer, attempt.amount_minor, attempt.currency, attempt.destination)
        if diffs:
            self._anomaly(Anomaly("transfer_mismatch", f"transfer {transfer.transfer_id} for attempt "
                                  f"{attempt.idempotency_key}: {'; '.join(diffs)}", attempt.payout_item_id,
                                  attempt.attempt_pk, transfer.transfer_id))
