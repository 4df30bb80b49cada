"""`sorae-payouts month-end PERIOD` and `sorae-payouts batch execute PERIOD`: the same Dagster jobs
the UI and the schedule run, launched through the instance with the code location (so each run shows
under its job and its asset partitions), awaited, then summarized as the outcome table.

No daemon is needed: the run goes straight to the instance's run launcher (see `defs/launching.py`).
The instance is DAGSTER_HOME, else ./data/dagster_home (the one `dagster dev` is pointed at in the README).
"""

from __future__ import annotations

import json

import typer
from rich.console import Console

from sorae_payouts.cli import program_option
from sorae_payouts.cli.tables import missing_batch_message, outcome_json, outcome_table
from sorae_payouts.core.periods import ProgramMonth, parse_period, period_key
from sorae_payouts.ledger.database import create_ledger_engine
from sorae_payouts.month_end.batches import BatchError, load_batch
from sorae_payouts.month_end.manifest import batch_id_for

console = Console()


def _period(text: str):
    try:
        return parse_period(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _launch(job_name: str, period, tags: dict, as_json: bool, program_ids: list[str] | None):
    """One run: the month of one program, or of every program (`program_ids` None: all partitions)."""
    from sorae_payouts.instance import launching  # Dagster is imported only to launch

    def progress(status: str) -> None:
        if not as_json:
            console.print(f"{job_name} [{period_key(period)}]: {status.lower()}")

    if program_ids is not None and len(program_ids) == 1:
        return launching.launch_and_wait(
            job_name, period.isoformat(), program_id=program_ids[0], tags=tags, on_status=progress
        )
    from sorae_payouts.defs.lib.partitions import sync_program_partitions
    from sorae_payouts.instance.local import local_instance
    from sorae_payouts.ledger.database import data_dir
    from sorae_payouts.registry.programs import list_programs

    instance = local_instance(data_dir())
    with create_ledger_engine().connect() as conn:  # every registered program has its partitions
        sync_program_partitions(instance, [p.program_id for p in list_programs(conn)])
    return launching.launch_range_and_wait(
        job_name,
        period.isoformat(),
        period.isoformat(),
        program_ids=program_ids,
        tags=tags,
        on_status=progress,
        instance=instance,
    )


def _report(engine, period, run, as_json: bool, program_ids: list[str]) -> None:
    from sorae_payouts.execution.outcomes import batch_outcome

    outcomes = []
    with engine.connect() as conn:
        for program_id in program_ids:
            try:
                outcomes.append(batch_outcome(conn, batch_id_for(period, program_id)))
            except Exception:
                continue
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run": run.as_json(),
                    "outcomes": [outcome_json(o) for o in outcomes],
                    "outcome": outcome_json(outcomes[0]) if len(outcomes) == 1 else None,
                },
                indent=2,
            )
        )
    else:
        colour = "green" if run.success else "red"
        console.print(f"run {run.run_id} ({run.job_name}, {run.partition}): [{colour}]{run.status}[/]")
        for failure in run.failures:
            console.print(f"[red]{failure}[/red]")
        for check_name, passed in sorted(run.checks.items()):
            console.print(f"check {check_name}: " + ("[green]passed[/]" if passed else "[red]FAILED[/]"))
        for outcome in outcomes:
            console.print(outcome_table(outcome))
    if not run.success:
        raise typer.Exit(1)


def month_end(
    period: str = typer.Argument(..., help="YYYY-MM"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    program: str = typer.Option(
        None, "--program", help="Only this program (default: every active program, in one run)."
    ),
) -> None:
    """Finalize the month and build its manifest (month_end_job, with the blocking checks): a draft to
    review and approve, per program. Refused before anything is written when months must be closed in
    another order (one program named), or per program in the run (every program)."""
    from sorae_payouts.registry.programs import list_programs
    from sorae_payouts.use_cases.month_end import admit_month_end

    month = _period(period)
    engine = create_ledger_engine()
    with engine.connect() as conn:
        programs = [program] if program else [p.program_id for p in list_programs(conn, active_only=True)]
        if len(programs) == 1:  # one program: refused before launching (a run over many refuses per program)
            admission = admit_month_end(conn, [ProgramMonth(month, programs[0])])
            why = next(iter({**admission.refused, **admission.skipped}.values()), None)
            if why is not None:
                if as_json:
                    typer.echo(json.dumps({"run": None, "refused": why}, indent=2))
                else:
                    console.print(f"[red]refused:[/red] {why}", highlight=False)
                raise typer.Exit(1)
    tags = {"sorae/batch_id": batch_id_for(month, programs[0])} if len(programs) == 1 else {}
    run = _launch("month_end_job", month, tags, as_json, programs if len(programs) == 1 else None)
    _report(engine, month, run, as_json, programs)


def execute(
    period: str = typer.Argument(..., help="YYYY-MM"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    program: str = program_option.option(),
) -> None:
    """Pay a program's APPROVED batch (payout_execution_job): only pending items are sent, never twice."""
    from sorae_payouts.registry.programs import ProgramError

    month = _period(period)
    engine = create_ledger_engine()
    with engine.connect() as conn:
        try:
            program_id = program_option.resolve_program(conn, program, month)
            batch = load_batch(conn, month, program_id=program_id)
        except ProgramError as exc:
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(1) from exc
        except BatchError as exc:
            console.print(f"[red]{missing_batch_message(conn, month)}[/red]")
            raise typer.Exit(1) from exc
    tags = {"sorae/batch_id": batch.batch_id, "sorae/manifest_hash": batch.manifest_hash}
    _report(engine, month, _launch("payout_execution_job", month, tags, as_json, [program_id]), as_json, [program_id])
