"""Executing an approved batch against Stripe.

1. Refuse (nothing sent) a batch that is not approved or whose items no longer hash to the approved
   manifest.
2. Pre-flight: each destination must exist and be able to receive transfers; items whose account is
   not ready are held with a reason (they stay pending). The platform's available balance must cover
   what is about to be sent, per currency, or the run stops before any transfer.
3. A bounded worker pool sends one transfer per item through the rate-limited gateway. Each item is
   idempotent on its own (claim -> call -> record), so a crash, a retry of the whole step or a
   concurrent run never pays twice; one failing account never blocks the others.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from sorae_payouts.batches import load_batch
from sorae_payouts.execution import attempts as ledger
from sorae_payouts.execution.outcomes import BatchOutcome, batch_outcome, settle_batch_status
from sorae_payouts.manifest import compute_manifest_hash
from sorae_payouts.money import format_minor
from sorae_payouts.periods import period_key
from sorae_payouts.stripe_gateway import Disposition, StripeGateway, TransferOutcome, TransferRecord, TransferRequest

EXECUTABLE_STATUSES = ("approved", "executing", "partially_completed", "completed", "completed_with_exceptions")


class ExecutionRefused(Exception):
    """Nothing was sent: the batch may not be executed now. The message says why."""


@dataclass(frozen=True)
class ExecutionSettings:
    workers: int = 16
    same_key_attempts: int = 6  # sends of one key within a run when Stripe says "not now" (429/409)
    backoff_base_seconds: float = 0.25
    backoff_max_seconds: float = 8.0
    # Stripe may prune idempotency keys after 24 h; past this age an unknown outcome is looked up first.
    key_safe_age: timedelta = timedelta(hours=20)
    # Above this many destinations, page through all connected accounts (100 per request) instead of
    # one GET per destination.
    account_list_threshold: int = 100


@dataclass
class ExecutionReport:
    batch_id: str
    period_label: str
    held: dict[int, str] = field(default_factory=dict)
    sent: int = 0
    resolved_by_lookup: int = 0
    anomalies: list[str] = field(default_factory=list)
    outcome: BatchOutcome | None = None
    seconds: float = 0.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def execute_batch(engine: sa.Engine, gateway: StripeGateway, period, *, settings: ExecutionSettings | None = None,
                  on_item_done: Callable[[], None] | None = None, clock: Callable[[], datetime] = utcnow,
                  only: Callable[[ledger.WorkItem], bool] | None = None) -> ExecutionReport:
    """Send (or resolve) the batch's pending and processing items; `only` narrows the work, e.g. to
    the items an operator retries, or to unresolved attempts for a refresh."""
    settings = settings or ExecutionSettings()
    started = time.perf_counter()
    with engine.begin() as conn:
        batch = load_batch(conn, period)
        if batch.status not in EXECUTABLE_STATUSES:
            raise ExecutionRefused(f"batch {batch.batch_id} is {batch.status}, not approved: review it and run "
                                   f"`sorae-payouts batch approve {period_key(period)} --by NAME`; nothing was sent")
        actual, count = compute_manifest_hash(conn, batch.batch_id, batch.period, batch.policy)
        if actual != batch.manifest_hash or count != batch.item_count:
            raise ExecutionRefused(f"batch {batch.batch_id}: items no longer match the approved manifest "
                                   f"(hash {actual[:16]} != {batch.manifest_hash[:16]}); nothing was sent")
        ledger_identity = ledger.ledger_id(conn)
        items = [i for i in ledger.work_items(conn, batch.batch_id) if only is None or only(i)]
    report = ExecutionReport(batch.batch_id, period_key(period))
    run = _Run(engine, gateway, settings, batch.batch_id, report.period_label, ledger_identity, report, clock,
               on_item_done)
    sendable = run.preflight(items)
    if sendable:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE payout_batch SET status = 'executing' WHERE batch_id = :b "
                                 "AND status <> 'executing'"), {"b": batch.batch_id})
        with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="transfer") as pool:
            list(pool.map(run.process, sendable))
    with engine.begin() as conn:
        settle_batch_status(conn, batch.batch_id)
        report.outcome = batch_outcome(conn, batch.batch_id)
    report.seconds = time.perf_counter() - started
    return report


class _Run:
    """State shared by the worker threads of one execution."""

    def __init__(self, engine, gateway, settings, batch_id, period_label, ledger_identity, report, clock, on_item_done):
        self.engine, self.gateway, self.settings = engine, gateway, settings
        self.batch_id, self.period_label, self.ledger_identity = batch_id, period_label, ledger_identity
        self.report, self.clock, self.on_item_done = report, clock, on_item_done
        self.exhausted_currencies: set[str] = set()
        self.lock = threading.Lock()

    def preflight(self, items: list[ledger.WorkItem]) -> list[ledger.WorkItem]:
        """Hold items whose account cannot receive transfers; stop on a balance shortfall."""
        pending = [i for i in items if i.status == "pending"]
        destinations = sorted({i.destination for i in pending})
        if len(destinations) > self.settings.account_list_threshold:
            known = {a.account_id: a for a in self.gateway.all_account_readiness()}
            readiness = {d: known.get(d) or self.gateway.account_readiness(d) for d in destinations}
        else:
            with ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="preflight") as pool:
                readiness = dict(zip(destinations, pool.map(self.gateway.account_readiness, destinations)))
        holds = {i.payout_item_id: readiness[i.destination].hold_reason for i in pending
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

    def _process(self, item: ledger.WorkItem) -> None:
        if item.currency in self.exhausted_currencies and item.status == "pending":
            ledger.hold(self.engine, {item.payout_item_id: "platform balance ran out during this run"}, now=self.clock())
            return
        attempt = ledger.claim(self.engine, item, ledger=self.ledger_identity, now=self.clock())
        if attempt is None:
            return  # claimed by a concurrent run, or no longer pending
        if attempt.resumed and self.clock() - attempt.created_at >= self.settings.key_safe_age:
            # The key may have been pruned by Stripe: re-sending it could create a second transfer.
            if self._resolve_by_lookup(attempt, "key older than the safe age; found by lookup"):
                return
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
            if outcome.disposition is Disposition.UNKNOWN:
                if self._resolve_by_lookup(attempt, "outcome unknown; found by lookup"):
                    return
            elif outcome.disposition is Disposition.POSTED:
                self._check_matches(attempt, outcome.transfer)
            elif outcome.error and outcome.error.code == "balance_insufficient":
                self.exhausted_currencies.add(item.currency)
            ledger.record(self.engine, attempt, outcome, now=self.clock())
            return
        ledger.record(self.engine, attempt, outcome, now=self.clock(),
                      unknown_reason=f"not accepted after {send + 1} sends "
                                     f"({outcome.error.code if outcome.error else 'unknown'}); same key next run")

    def _request(self, item: ledger.WorkItem, attempt: ledger.Attempt) -> TransferRequest:
        metadata = {"sorae_ledger_id": self.ledger_identity, "payout_item_id": str(item.payout_item_id),
                    "attempt_number": str(attempt.attempt_number), "period": self.period_label,
                    "batch_id": self.batch_id, "affiliate_id": item.affiliate_id}
        return TransferRequest(attempt.amount_minor, attempt.currency, attempt.destination, self.batch_id,
                               f"Sorae affiliate commissions {self.period_label} ({item.affiliate_id})", metadata)

    def _resolve_by_lookup(self, attempt: ledger.Attempt, reason: str) -> bool:
        found = find_transfer(self.gateway, self.batch_id, self.ledger_identity, attempt)
        if found is None:
            return False
        self._check_matches(attempt, found)
        ledger.record(self.engine, attempt, TransferOutcome(Disposition.POSTED, found), now=self.clock())
        with self.lock:
            self.report.resolved_by_lookup += 1
        return True

    def _check_matches(self, attempt: ledger.Attempt, transfer: TransferRecord) -> None:
        if (transfer.amount_minor, transfer.currency, transfer.destination) != (
                attempt.amount_minor, attempt.currency, attempt.destination):
            with self.lock:
                self.report.anomalies.append(
                    f"transfer {transfer.transfer_id} for attempt {attempt.idempotency_key} is "
                    f"{transfer.amount_minor} {transfer.currency} to {transfer.destination}, expected "
                    f"{attempt.amount_minor} {attempt.currency} to {attempt.destination}")


def find_transfer(gateway: StripeGateway, batch_id: str, ledger_identity: str,
                  attempt: ledger.Attempt) -> TransferRecord | None:
    """The transfer Stripe holds for this attempt, matched on metadata (never on amount alone)."""
    for transfer in gateway.transfers(batch_id, destination=attempt.destination):
        meta = transfer.metadata
        if (meta.get("sorae_ledger_id") == ledger_identity and meta.get("payout_item_id") == str(attempt.payout_item_id)
                and meta.get("attempt_number") == str(attempt.attempt_number)):
            return transfer
    return None
