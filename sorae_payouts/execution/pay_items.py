"""One execution's worker side: pre-flight, then claim -> Stripe call -> record for each item, in threads.

`ExecutionRun` holds what the worker threads of one run share (the program's transfer group, the
report, what pays each transfer); `executor.execute_batch` builds it after the Stripe group scan.
Each item is idempotent on its own: the claim (attempt, key, charge) commits before Stripe is called,
the outcome right after; a resumed attempt re-sends its own key with its own request.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from sorae_payouts.core.periods import parse_period
from sorae_payouts.execution import attempts
from sorae_payouts.execution.anomalies import Anomaly, record_anomalies
from sorae_payouts.execution.identity import (
    PaymentIdentity,
    legacy_transfer_metadata,
    transfer_group,
    transfer_metadata,
)
from sorae_payouts.execution.outcomes import BatchOutcome
from sorae_payouts.execution.preflight import hold_unready, require_money
from sorae_payouts.execution.sources import Sources
from sorae_payouts.execution.stripe_scan import after_refused_key, differences, find_transfer
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.registry import funding
from sorae_payouts.registry.programs import DEFAULT_PROGRAM
from sorae_payouts.stripe_gateway import Disposition, TransferOutcome, TransferRecord, TransferRequest
from sorae_payouts.stripe_gateway.error_codes import stops_currency


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
    source_list_requests: int = 0  # later months' groups listed for money carried forward (`sources`)
    anomalies: list[Anomaly] = field(default_factory=list)
    live_announcement: str | None = None
    outcome: BatchOutcome | None = None
    seconds: float = 0.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class ExecutionRun:
    """State shared by the worker threads of one execution."""

    def __init__(
        self,
        engine,
        gateway,
        settings,
        batch_id,
        period_label,
        report,
        clock,
        on_item_done,
        program_id: str = DEFAULT_PROGRAM,
        *,
        funded: bool = False,
        sources: dict[tuple[str, str], Sources] | None = None,
    ):
        self.engine, self.gateway, self.settings = engine, gateway, settings
        self.sources = sources or {}  # (affiliate, currency) -> what the item pays besides its month
        self.batch_id, self.period_label, self.program_id = batch_id, period_label, program_id
        self.group = transfer_group(parse_period(period_label), program_id)
        self.report, self.clock, self.on_item_done = report, clock, on_item_done
        self.funded = funded  # spends only the program's funding (shared platform account)
        self.source: attempts.SourceChooser | None = None
        self.exhausted_currencies: set[str] = set()
        self.lock = threading.Lock()

    def preflight(self, items: list[attempts.WorkItem]) -> list[attempts.WorkItem]:
        """Hold items whose account cannot receive transfers; stop when the money is not there."""
        holds = hold_unready(
            self.engine,
            self.gateway,
            self.batch_id,
            items,
            workers=self.settings.workers,
            account_list_threshold=self.settings.account_list_threshold,
        )
        attempts.hold(self.engine, holds, now=self.clock())
        self.report.held = holds
        # Unresolved attempts are always resumed: they may already be paid, so they never wait on readiness.
        sendable = [i for i in items if i.payout_item_id not in holds]
        require_money(
            self.engine,
            self.gateway,
            program_id=self.program_id,
            batch_id=self.batch_id,
            sendable=sendable,
            funded=self.funded,
        )
        self.source = self._source_chooser()
        return sendable

    def _source_chooser(self) -> attempts.SourceChooser | None:
        """What pays each claimed transfer: a charge of the program with room, its top-ups, or (not
        funded, no charge recorded on this account) the balance as always: then no chooser at all."""
        account = self.gateway.paying_account()
        if not self.funded:
            with self.engine.connect() as conn:
                if not any(
                    f.kind == funding.CHARGE and f.paying_account == account
                    for f in funding.list_funding(conn, self.program_id)
                ):
                    return None

        def choose(conn: sa.Connection, item: attempts.WorkItem) -> tuple[str | None, str | None]:
            return funding.source_choice(
                conn,
                program_id=self.program_id,
                paying_account=account,
                currency=item.currency,
                amount_minor=item.amount_minor,
                strict=self.funded,
            )

        return choose

    def process(self, item: attempts.WorkItem) -> None:
        try:
            self._process(item)
        finally:
            if self.on_item_done:
                self.on_item_done()

    def identity(self, item: attempts.WorkItem) -> PaymentIdentity:
        return PaymentIdentity(self.program_id, self.period_label, item.affiliate_id, item.currency)

    def _anomaly(self, anomaly: Anomaly) -> None:
        """Recorded at once (rare): a run killed later still leaves it for operators."""
        record_anomalies(self.engine, self.batch_id, [anomaly], now=self.clock())
        with self.lock:
            self.report.anomalies.append(anomaly)

    def _process(self, item: attempts.WorkItem) -> None:
        if item.currency in self.exhausted_currencies and item.status == ItemStatus.PENDING:
            attempts.hold(
                self.engine, {item.payout_item_id: "platform balance ran out during this run"}, now=self.clock()
            )
            return
        attempt = attempts.claim(
            self.engine,
            item,
            paying_account=self.gateway.paying_account(),
            identity=self.identity(item),
            now=self.clock(),
            source=self.source,
            sources=self.sources.get((item.affiliate_id, item.currency), Sources()).to_json(),
        )
        if attempt is None:
            return  # claimed by a concurrent run, no longer pending, or already has a posted attempt
        if isinstance(attempt, attempts.Held):  # the program's funding cannot pay it: never overspend
            with self.lock:
                self.report.held[item.payout_item_id] = attempt.reason
            return
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
                time.sleep(
                    random.uniform(
                        0, min(self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2**send)
                    )
                )
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
            elif outcome.error and stops_currency(outcome.error.code):
                self.exhausted_currencies.add(item.currency)
            attempts.record(self.engine, attempt, outcome, now=self.clock(), note=note)
            return
        attempts.record(
            self.engine,
            attempt,
            outcome,
            now=self.clock(),
            unknown_reason=f"not accepted after {send + 1} sends "
            f"({outcome.error.code if outcome.error else 'unknown'}); same key next run",
        )

    def _request(self, item: attempts.WorkItem, attempt: attempts.Attempt) -> TransferRequest:
        """The request of an attempt: always the same for the same attempt (a re-sent key must carry the
        parameters it was first sent with, or Stripe refuses it)."""
        description = f"Sorae affiliate commissions {self.period_label} ({item.affiliate_id})"
        if attempt.legacy:  # claimed before revision 0005: the metadata of that format
            metadata = legacy_transfer_metadata(
                attempt.idempotency_key, self.identity(item), attempt.attempt_number, item.payout_item_id, self.batch_id
            )
        else:
            metadata = transfer_metadata(
                self.identity(item),
                attempt.attempt_number,
                item.payout_item_id,
                Sources.from_json(attempt.sources).metadata(),  # as claimed: a re-send sends the same
            )
        # Only a transfer drawn on a charge sends `source_transaction` (the charge stored at claim).
        drawn = {"source_transaction": attempt.source_transaction} if attempt.source_transaction else {}
        return TransferRequest(
            attempt.amount_minor, attempt.currency, attempt.destination, self.group, description, metadata, **drawn
        )

    def _check_replay(self, attempt: attempts.Attempt, outcome: TransferOutcome) -> str | None:
        """A re-sent key should be replayed; a fresh key replayed means another ledger sent it first."""
        transfer = outcome.transfer
        assert transfer is not None, "a posted outcome carries its transfer"
        if attempt.resumed and not outcome.replayed:
            self._anomaly(
                Anomaly(
                    "resent_key_executed_anew",
                    f"key {attempt.idempotency_key} of an earlier run was executed anew by "
                    f"Stripe (no Idempotent-Replayed): its first send never executed or the key was pruned; the group "
                    f"scan before this send found no transfer, so {transfer.transfer_id} is the only one",
                    attempt.payout_item_id,
                    attempt.attempt_pk,
                    transfer.transfer_id,
                )
            )
        if not attempt.resumed and outcome.replayed:
            note = (
                f"adopted from Stripe: key {attempt.idempotency_key} was replayed (first sent by another "
                f"ledger with the same parameters); transfer {transfer.transfer_id}, nothing new sent"
            )
            self._anomaly(
                Anomaly("adopted_from_stripe", note, attempt.payout_item_id, attempt.attempt_pk, transfer.transfer_id)
            )
            with self.lock:
                self.report.adopted += 1
            return note
        return None

    def _resolve_by_lookup(self, item: attempts.WorkItem, attempt: attempts.Attempt) -> bool:
        found = find_transfer(
            self.gateway, self.group, self.identity(item), attempt.destination, attempt.attempt_number
        )
        if not found:
            return False
        self._check_matches(attempt, found[0])
        attempts.record(self.engine, attempt, TransferOutcome(Disposition.POSTED, found[0]), now=self.clock())
        with self.lock:
            self.report.resolved_by_lookup += 1
        return True

    def _key_refused(self, item: attempts.WorkItem, attempt: attempts.Attempt, outcome: TransferOutcome) -> None:
        """`idempotency_error`: adopt the transfer that pays the item, or block it. Never a new key."""
        adopt, kind, reason = after_refused_key(
            self.gateway, self.group, self.identity(item), attempt, outcome.request_id
        )
        if adopt is not None:
            attempts.record(
                self.engine, attempt, TransferOutcome(Disposition.POSTED, adopt), now=self.clock(), note=reason
            )
            with self.lock:
                self.report.adopted += 1
        else:
            attempts.block(
                self.engine,
                item.payout_item_id,
                reason,
                now=self.clock(),
                attempt=attempt,
                error_code="idempotency_error",
            )
            with self.lock:
                self.report.blocked[item.payout_item_id] = reason
        self._anomaly(
            Anomaly(kind, reason, item.payout_item_id, attempt.attempt_pk, adopt.transfer_id if adopt else None)
        )

    def _check_matches(self, attempt: attempts.Attempt, transfer: TransferRecord) -> None:
        diffs = differences(transfer, attempt.amount_minor, attempt.currency, attempt.destination)
        if diffs:
            self._anomaly(
                Anomaly(
                    "transfer_mismatch",
                    f"transfer {transfer.transfer_id} for attempt {attempt.idempotency_key}: {'; '.join(diffs)}",
                    attempt.payout_item_id,
                    attempt.attempt_pk,
                    transfer.transfer_id,
                )
            )
