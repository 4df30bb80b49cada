"""Closing months: which requested program-months may run now, decided once for the CLI and Dagster."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from sorae_payouts.core.periods import ProgramMonth
from sorae_payouts.execution.sources import check_unpaid_items
from sorae_payouts.month_end.carry_check import StripeAnswer, UnpaidCandidate, UnpaidCheck
from sorae_payouts.month_end.month_order import month_order_refusals
from sorae_payouts.registry.paying_accounts import ProgramGateways
from sorae_payouts.registry.programs import list_programs


@dataclass
class Admission:
    """The request split three ways: what may run, what is refused (and why), what is skipped (why)."""

    admitted: list[ProgramMonth] = field(default_factory=list)
    refused: dict[ProgramMonth, str] = field(default_factory=dict)
    skipped: dict[ProgramMonth, str] = field(default_factory=dict)


def admit_month_end(conn: sa.Connection, requested: Iterable[ProgramMonth], *, check_order: bool = True) -> Admission:
    """Unknown programs are refused, disabled ones skipped (their months stay open, nothing is written);
    then each program's requested months are checked against the order months must close in
    (`month_order`), before anything is written: a program whose months cannot run now, in this order, is
    refused as a whole with the months to run instead. Programs never hold each other back. `check_order`
    False: only the checks of months already built are asked for (no month is written)."""
    admission, kept = Admission(), []
    programs = {p.program_id: p for p in list_programs(conn)}
    for pm in requested:
        program = programs.get(pm.program_id)
        if program is None:
            admission.refused[pm] = (
                f"unknown program {pm.program_id!r}: no such program in the ledger "
                "(`sorae-payouts programs add` registers one)"
            )
        elif program.status != "active":
            admission.skipped[pm] = f"program {pm.program_id} is {program.status}"
        else:
            kept.append(pm)
    months_of: dict[str, list] = {}
    for pm in kept:
        months_of.setdefault(pm.program_id, []).append(pm.period)
    by_months: dict[tuple, list[str]] = {}  # programs asking for the same months are checked in one query
    for program_id, months in months_of.items():
        by_months.setdefault(tuple(sorted(months)), []).append(program_id)
    refused_programs: dict[str, str] = {}
    for months, ids in by_months.items() if check_order else ():
        refused_programs.update(month_order_refusals(conn, list(months), ids))
    for pm in kept:
        if pm.program_id in refused_programs:
            admission.refused[pm] = refused_programs[pm.program_id]
        else:
            admission.admitted.append(pm)
    return admission


def unpaid_checker(gateways: ProgramGateways | Callable[[], ProgramGateways]) -> UnpaidCheck:
    """The month end's question about unpaid items it would carry (`month_end.carry_check`), asked at Stripe
    through each program's paying account (`execution.sources.check_unpaid_items`). `gateways` may be a
    function that makes them: Stripe is configured only when a program has something to carry."""

    def check(program_id: str, items: list[UnpaidCandidate], into: date) -> StripeAnswer:
        made = gateways if isinstance(gateways, ProgramGateways) else gateways()
        return check_unpaid_items(made.for_program_id(program_id), program_id, items, into)

    return check
