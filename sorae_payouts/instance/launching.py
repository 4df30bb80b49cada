"""Launch a job's run through the Dagster instance WITH the code location's origin, then wait for it.

Runs made by `execute_in_process`/`materialize` carry no repository origin: the UI lists them on the
Runs page but not under their job, nor in the asset partitions' run history. This module does what
`dagster job launch` does: it loads the code location `sorae_payouts` (the name `dagster dev` and
workspace.yaml use) in a gRPC code server, creates the run from the remote job (origin, snapshots,
execution plan) with its partition and operator tags, and hands it to the instance's run LAUNCHER.

Partitions are program-months: `launch_and_wait` runs one ("2026-10-01" with `program_id=`, or the
key "2026-10-01|acme"), `launch_range_and_wait` runs ONE run over months x programs (every program key,
or a block of adjacent ones). Runs carry `sorae/program` and, for execution, `sorae/paying_account`
(the Stripe account id that pays, never a key) so the instance's tag concurrency limits apply.

Why the launcher and not `submit_run` (the run queue): the queue is drained by `dagster-daemon`, and
the CLI and the demo must work where no daemon runs (a laptop, CI, an operator's shell). The launcher
starts the run worker at once, exactly as the daemon would after dequeuing; the run is then a normal
run of the instance: same storage, same origin, visible under its job while it runs. Concurrency
pools (`stripe_api`) are still enforced per step by the instance.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget

from sorae_payouts.core.periods import parse_period
from sorae_payouts.defs.lib.partitions import (
    PROGRAM,
    ProgramMonth,
    parse_partition,
    program_months,
    range_tags,
    sync_program_partitions,
)
from sorae_payouts.defs.lib.tags import TAG_OPERATOR, TAG_PAYING_ACCOUNT, TAG_PROGRAM, PayingAccounts
from sorae_payouts.instance.local import local_instance
from sorae_payouts.ledger.database import data_dir
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

CODE_LOCATION = "sorae_payouts"
DEFINITIONS_MODULE = "sorae_payouts.definitions"
EXECUTION_JOB = "payout_execution_job"


@dataclass
class LaunchedRun:
    run_id: str
    job_name: str
    partition: str  # "2026-10-01|default", or "first...last" for a range
    status: str  # SUCCESS, FAILURE, CANCELED
    failures: list[str] = field(default_factory=list)  # "step: message" of failed steps
    checks: dict[str, bool] = field(default_factory=dict)  # asset check name -> passed (every partition)
    checks_by_partition: dict[str, dict[str, bool]] = field(default_factory=dict)  # partition -> name -> passed

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"

    def as_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "job": self.job_name,
            "partition": self.partition,
            "status": self.status,
            "failures": self.failures,
            "checks": self.checks,
            "checks_by_partition": self.checks_by_partition,
        }


def operator_name() -> str:
    """Who launched the run, for the `sorae/operator` tag: SORAE_OPERATOR, else the login name."""
    return os.environ.get("SORAE_OPERATOR") or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


# The run's own event log keeps everything (UI); the console logger of the run worker, which writes
# into the operator's terminal, only speaks for CRITICAL: the CLI prints the outcome and failures itself.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _create_run(instance: dg.DagsterInstance, workspace, job_name: str, tags: Mapping[str, str], run_config: dict):
    from dagster._core.definitions.selector import JobSubsetSelector

    location = workspace.get_code_location(CODE_LOCATION)
    [repo] = location.get_repositories().values()
    remote_job = location.get_job(
        JobSubsetSelector(location_name=CODE_LOCATION, repository_name=repo.name, job_name=job_name, op_selection=None)
    )
    plan = location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=None,
        step_keys_to_execute=None,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.run_tags, **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repo.asset_graph,
    )


@contextmanager
def code_location_workspace(instance: dg.DagsterInstance) -> Iterator:
    """The code location `sorae_payouts` served by a gRPC code server for as long as the block runs
    (launch several runs through one: the demo saves a code-server start per run)."""
    target = ModuleTarget(
        module_name=DEFINITIONS_MODULE, attribute=None, working_directory=os.getcwd(), location_name=CODE_LOCATION
    )
    with WorkspaceProcessContext(
        instance, target, version=dg.__version__, read_only=False, code_server_log_level="WARNING"
    ) as process_context:
        workspace = process_context.create_request_context()
        errors = workspace.get_code_location_error(CODE_LOCATION)
        if errors:
            raise RuntimeError(f"code location {CODE_LOCATION} failed to load: {errors.message}")
        yield workspace


def launch_and_wait(
    job_name: str,
    partition: str,
    *,
    program_id: str = DEFAULT_PROGRAM,
    tags: Mapping[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    poll_seconds: float = 0.5,
    on_status=None,
    run_config: dict | None = None,
    workspace=None,
) -> LaunchedRun:
    """Launch `job_name` for one program-month through the instance and wait for the end. `partition`:
    the month ("YYYY-MM-01", program `program_id`) or the full key ("YYYY-MM-01|program")."""
    pm = parse_partition(partition) if "|" in partition else ProgramMonth(parse_period(partition), program_id)
    instance = instance or local_instance(data_dir())
    sync_program_partitions(instance, [pm.program_id])
    run_tags = {**program_months.get_tags_for_partition_key(str(pm.key)), TAG_PROGRAM: pm.program_id, **(tags or {})}
    if job_name == EXECUTION_JOB and TAG_PAYING_ACCOUNT not in run_tags:
        run_tags[TAG_PAYING_ACCOUNT] = PayingAccounts.from_environment().tag_for(pm.program_id)
    return _launch(job_name, str(pm.key), run_tags, instance, poll_seconds, on_status, run_config, workspace)


def launch_range_and_wait(
    job_name: str,
    first_month: str,
    last_month: str,
    *,
    program_ids: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    poll_seconds: float = 0.5,
    on_status=None,
    run_config: dict | None = None,
    workspace=None,
) -> LaunchedRun:
    """ONE run over the months first..last x the programs: every program partition (None), or the
    given programs, which must be adjacent in the instance's key order (a run is a rectangle of keys)."""
    instance = instance or local_instance(data_dir())
    if program_ids:
        sync_program_partitions(instance, program_ids)
    keys = instance.get_dynamic_partitions(PROGRAM)
    chosen = list(keys) if not program_ids else sorted(set(program_ids), key=keys.index)
    if not chosen:
        raise ValueError("no program partitions in the instance: register a program first")
    block = keys[keys.index(chosen[0]) : keys.index(chosen[-1]) + 1]
    if block != chosen:
        raise ValueError(
            f"programs {', '.join(chosen)} are not adjacent partition keys (between them: "
            f"{', '.join(k for k in block if k not in chosen)}): run them one at a time, or all"
        )
    first = ProgramMonth(parse_period(first_month), chosen[0])
    last = ProgramMonth(parse_period(last_month), chosen[-1])
    run_tags = {**range_tags(first, last), **({TAG_PROGRAM: chosen[0]} if len(chosen) == 1 else {}), **(tags or {})}
    return _launch(
        job_name, f"{first.key}...{last.key}", run_tags, instance, poll_seconds, on_status, run_config, workspace
    )


def _launch(
    job_name: str, partition: str, tags: dict, instance, poll_seconds, on_status, run_config, workspace
) -> LaunchedRun:
    if workspace is None:
        with code_location_workspace(instance) as workspace:
            return _launch(job_name, partition, tags, instance, poll_seconds, on_status, run_config, workspace)
    run_tags = {TAG_OPERATOR: operator_name(), **tags}
    run = _create_run(instance, workspace, job_name, run_tags, QUIET_RUN_CONFIG if run_config is None else run_config)
    instance.launch_run(run.run_id, workspace)
    last = None
    # Wait while the workspace is open: its code server must outlive the run it started.
    while not (run := instance.get_run_by_id(run.run_id)).is_finished:
        if on_status and run.status != last:
            on_status(run.status.value)
            last = run.status
        time.sleep(poll_seconds)
    by_partition = _checks(instance, run.run_id)
    checks: dict[str, bool] = {}
    for results in by_partition.values():
        for name, passed in results.items():
            checks[name] = checks.get(name, True) and passed
    return LaunchedRun(
        run.run_id, job_name, partition, run.status.value, _failures(instance, run.run_id), checks, by_partition
    )


def _checks(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, bool]]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    out: dict[str, dict[str, bool]] = {}
    for r in records:
        data = r.event_log_entry.dagster_event.event_specific_data
        out.setdefault(str(data.partition or ""), {})[data.check_name] = data.passed
    return out


def _failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    out = []
    for record in records:
        event = record.event_log_entry.dagster_event
        error = event.event_specific_data.error if event and event.event_specific_data else None
        message = error.message.strip() if error else "failed"
        head, _, rest = message.partition(": ")
        if rest and "." in head and " " not in head:  # "dagster._core...Failure: text" -> "text"
            message = rest
        out.append(f"{event.step_key}: {message}")
    if not out:  # a run that failed outside any step (e.g. the worker could not start)
        for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records:
            out.append(f"run: {record.event_log_entry.dagster_event.message}")
    return out
