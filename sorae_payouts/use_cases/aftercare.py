"""After payment, for the CLI and Dagster alike: refresh every program's batches, recover, reconcile."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.aftercare.reconcile import reconcile_batch
from sorae_payouts.aftercare.recovery import RecoveryReport, recover_negative_balances
from sorae_payouts.aftercare.refresh import RefreshReport, refresh_batch, refreshable_periods
from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.periods import ProgramMonth
from sorae_payouts.execution.pay_batch import ExecutionSettings
from sorae_payouts.month_end.audit import AuditResult
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.registry.programs import list_programs

_log = logging.getLogger(__name__)


@dataclass
class RefreshRun:
    """Every program-month refreshed (its report, and its reconciliation when asked) or refused (why)."""

    reports: dict[ProgramMonth, RefreshReport] = field(default_factory=dict)
    reconciled: dict[ProgramMonth, AuditResult] = field(default_factory=dict)
    refused: dict[ProgramMonth, str] = field(default_factory=dict)

    @property
    def drifted(self) -> list[ProgramMonth]:
        return [pm for pm, result in self.reconciled.items() if not result.passed]


def refresh_programs(
    engine: sa.Engine,
    gateways: ProgramGateways,
    *,
    period: date | None = None,
    program_ids: Iterable[str] | None = None,
    settings: ExecutionSettings | None = None,
    announce: Callable[[str], None] | None = None,
    reconcile: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RefreshRun:
    """Refresh the executed batches of every program (or those named), each through its own paying
    account: unknown outcomes resolved, reversals and account readiness appended, what has cleared paid
    (`aftercare.refresh`). With `reconcile`, each batch is then compared with Stripe. A program-month that
    is refused (its key does not resolve, a live key without the setting, ...) is reported with its
    reason and the others go on."""
    wanted = set(program_ids) if program_ids is not None else None
    with engine.connect() as conn:
        programs = [p for p in list_programs(conn) if wanted is None or p.program_id in wanted]
        work = [
            ProgramMonth(month, p.program_id)
            for p in programs
            for month in refreshable_periods(conn, period, program_id=p.program_id)
        ]
    run = RefreshRun()
    for done, pm in enumerate(work, 1):
        try:
            gateway = gateways.for_program_id(pm.program_id)
            run.reports[pm] = refresh_batch(
                engine, gateway, pm.period, program_id=pm.program_id, settings=settings, announce=announce
            )
            if reconcile:
                with engine.connect() as conn:
                    run.reconciled[pm] = reconcile_batch(conn, gateway, pm.period, program_id=pm.program_id)
        except PayoutRefused as exc:
            run.refused[pm] = str(exc)
        except Exception as exc:
            _log.exception("refresh of %s failed", pm)
            run.refused[pm] = f"{exc.__class__.__name__}: {exc}"
        if progress is not None:
            progress(done, len(work))
    return run


def recover(engine: sa.Engine, gateways: ProgramGateways, pm: ProgramMonth, *, now: datetime) -> RecoveryReport:
    """Negative-balance recovery by reversal for the program-month's batch (its frozen policy decides)."""
    gateway = gateways.for_program_id(pm.program_id)
    return recover_negative_balances(engine, gateway, pm.period, program_id=pm.program_id, now=now)


def reconcile(engine: sa.Engine, gateways: ProgramGateways, pm: ProgramMonth) -> AuditResult:
    """The program-month's transfers at Stripe (its paying account) against the ledger's posted attempts."""
    gateway = gateways.for_program_id(pm.program_id)
    with engine.connect() as conn:
        return reconcile_batch(conn, gateway, pm.period, program_id=pm.program_id)
