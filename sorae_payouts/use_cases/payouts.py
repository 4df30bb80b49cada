"""Paying a program's month and retrying its failed items, for the CLI and Dagster alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.aftercare.recovery import RecoveryReport, recover_negative_balances
from sorae_payouts.aftercare.retry import RetryPlan, execute_retry, plan_retry
from sorae_payouts.execution.pay_batch import ExecutionReport, ExecutionSettings, execute_batch
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.stripe_gateway import StripeGateway


@dataclass
class Payment:
    """One program-month paid: the execution's report and the negative-balance recovery that followed."""

    report: ExecutionReport
    recovery: RecoveryReport
    gateway: StripeGateway


def pay_program_month(
    engine: sa.Engine,
    gateways: ProgramGateways,
    period: date,
    program_id: str,
    *,
    settings: ExecutionSettings,
    now: datetime,
    announce: Callable[[str], None] | None = None,
) -> Payment:
    """Send the approved batch's pending items through the program's paying account (`execute_batch`),
    then, under the batch's frozen `recover_by_reversal` policy, recover its negative balances (a no-op
    under `carry`; its own keys make a second run safe)."""
    gateway = gateways.for_program_id(program_id)
    report = execute_batch(
        engine,
        gateway,
        period,
        program_id=program_id,
        settings=settings,
        announce=announce,
        platform_account=gateways.platform_account(),
    )
    recovery = recover_negative_balances(engine, gateway, period, program_id=program_id, now=now)
    return Payment(report, recovery, gateway)


@dataclass
class RetryRequest:
    """A plan of failed items to send again (new attempts), and the gateway that will send them."""

    plan: RetryPlan
    gateway: StripeGateway | None


def plan_retry_of(
    engine: sa.Engine,
    gateways: ProgramGateways | None,
    period: date,
    program_id: str,
    *,
    item_ids: Sequence[int] | None = None,
    error_code: str | None = None,
) -> RetryRequest:
    """Which failed items get a new attempt, with the keys they will use (the keys name the paying account:
    without `gateways`, a dry run shows them without it) and which items are refused, and why."""
    gateway = gateways.for_program_id(program_id) if gateways is not None else None
    with engine.connect() as conn:
        plan = plan_retry(
            conn,
            period,
            program_id=program_id,
            item_ids=list(item_ids) if item_ids else None,
            error_code=error_code,
            paying_account=gateway.paying_account() if gateway else None,
        )
    return RetryRequest(plan, gateway)


def send_retry(
    engine: sa.Engine,
    request: RetryRequest,
    *,
    now: datetime,
    requested_by: str,
    settings: ExecutionSettings | None = None,
    announce: Callable[[str], None] | None = None,
) -> ExecutionReport:
    """Reopen the planned items with a retry record naming who asked, and send only them."""
    if request.gateway is None:
        raise ValueError("a retry is sent through the program's gateway: plan it with gateways")
    return execute_retry(
        engine,
        request.gateway,
        request.plan,
        now=now,
        settings=settings,
        announce=announce,
        requested_by=requested_by,
    )
