"""Month-end domain calls over a SET of programs, as the Dagster steps use them.

TODO(lead): switch to mend's set-based calls. Each function here has the name and signature of the
set-based domain function (finalize.finalize_programs, manifest_programs.build_manifests,
audit.manifest_checks_per_program / reversals_are_accounted_per_program,
month_order.month_order_refusals, program_sets.ProgramOutcomes) and calls the single-program
function once per program (correct, slower): replace the imports in assets.py and
execution_assets.py and delete this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, TypeVar

import sqlalchemy as sa

from sorae_payouts import audit
from sorae_payouts.finalize import FinalizeError, FinalizeReport, finalize_period
from sorae_payouts.manifest import ManifestError, ManifestReport, PayoutPolicy, build_manifest
from sorae_payouts.month_order import MonthOrderError, check_month_end_order

T = TypeVar("T")


@dataclass
class ProgramOutcomes(Generic[T]):
    """Per program of the set: its report, or why it was refused (that program only)."""

    reports: dict[str, T] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def finalize_programs(engine: sa.Engine, period: date, program_ids: Iterable[str], *, now: datetime,
                      holding_days: int) -> ProgramOutcomes[FinalizeReport]:
    # TODO(lead): switch to mend's set-based call (finalize.finalize_programs)
    outcomes: ProgramOutcomes[FinalizeReport] = ProgramOutcomes()
    for program_id in program_ids:
        try:
            outcomes.reports[program_id] = finalize_period(engine, period, now=now, holding_days=holding_days,
                                                           program_id=program_id)
        except FinalizeError as exc:
            outcomes.refused[program_id] = str(exc)
    return outcomes


def build_manifests(engine: sa.Engine, period: date, program_ids: Iterable[str], *, policy: PayoutPolicy,
                    now: datetime) -> ProgramOutcomes[ManifestReport]:
    # TODO(lead): switch to mend's set-based call (manifest_programs.build_manifests)
    outcomes: ProgramOutcomes[ManifestReport] = ProgramOutcomes()
    for program_id in program_ids:
        try:
            outcomes.reports[program_id] = build_manifest(engine, period, policy=policy, now=now,
                                                          program_id=program_id)
        except ManifestError as exc:
            outcomes.refused[program_id] = str(exc)
    return outcomes


MANIFEST_CHECKS = {
    "money_is_conserved": audit.money_is_conserved,
    "finalized_rows_unchanged": audit.finalized_rows_unchanged,
    "one_item_per_affiliate_currency": audit.one_item_per_affiliate_currency,
}


def manifest_checks_per_program(conn: sa.Connection, period: date,
                                program_ids: Iterable[str]) -> dict[str, dict[str, audit.AuditResult]]:
    """program id -> check name -> result."""
    # TODO(lead): switch to mend's set-based call (audit.manifest_checks_per_program)
    return {p: {name: check(conn, period, program_id=p) for name, check in MANIFEST_CHECKS.items()}
            for p in program_ids}


def reversals_are_accounted_per_program(conn: sa.Connection, period: date,
                                        program_ids: Iterable[str]) -> dict[str, audit.AuditResult]:
    # TODO(lead): switch to mend's set-based call (audit.reversals_are_accounted_per_program)
    return {p: audit.reversals_are_accounted(conn, period, program_id=p) for p in program_ids}


def month_order_refusals(conn: sa.Connection, months: Sequence[date], program_ids: Iterable[str]) -> dict[str, str]:
    """program id -> why closing `months` now would be refused (only the programs that would be)."""
    # TODO(lead): switch to mend's set-based call (month_order.month_order_refusals)
    refused = {}
    for program_id in program_ids:
        try:
            check_month_end_order(conn, months, program_id=program_id)
        except MonthOrderError as exc:
            refused[program_id] = str(exc)
    return refused
